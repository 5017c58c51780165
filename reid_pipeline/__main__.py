import sys

from reid_pipeline.cli import main

sys.exit(main())
