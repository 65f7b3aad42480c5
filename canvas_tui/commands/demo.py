def register(sub):
    p = sub.add_parser("demo", help="train the tiny model briefly on the embedded text (headless)")
    p.set_defaults(func=lambda a: print("demo: coming") or 0)
