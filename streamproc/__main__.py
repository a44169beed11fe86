import sys

from streamproc.cli import main

sys.exit(main())
