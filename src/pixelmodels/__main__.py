from pixelmodels.cli import main

raise SystemExit(main())
