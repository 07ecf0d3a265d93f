"""`python -m hf_scratch.convert SRC DST [--to-hf]`: see `hf_scratch.convert`."""

import sys

from .folders import main

sys.exit(main())
