import sys

from classifier_client.cli import main

sys.exit(main())
