import sys

from deployments.stack.cli import main

sys.exit(main())
