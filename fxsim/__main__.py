"""``python -m fxsim`` runs the fxsim command."""
import sys

from fxsim.cli.main import main

sys.exit(main())
