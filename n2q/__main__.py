from n2q.cli import main

raise SystemExit(main())
