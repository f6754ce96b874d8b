import sys

from inferfleet.cli import main

sys.exit(main())
