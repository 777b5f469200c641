"""`python -m usagewatch.cli`: the same as the `usagewatch` command."""

from usagewatch.cli import main

raise SystemExit(main())
