import sys

from ctrbench.cli import main

sys.exit(main())
