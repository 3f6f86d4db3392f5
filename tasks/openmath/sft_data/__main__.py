"""``python -m tasks.openmath.sft_data sft-data prepare ...``: the sft-data commands without the rest of the CLI.

Cluster containers and the benchmark use this so they need none of the other command modules.
"""
import sys

from tasks.openmath.sft_data.cli import main

sys.exit(main())
