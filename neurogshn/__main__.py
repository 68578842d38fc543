from neurogshn.cli import main

raise SystemExit(main())
