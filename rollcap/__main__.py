from rollcap.cli import main

raise SystemExit(main())
