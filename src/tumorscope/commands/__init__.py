"""The ``tumorscope`` sub-commands, one small module each.

Every module exposes ``add_parser(sub)``, which builds the sub-command's parser and sets
``handler`` to its ``run(args) -> int``. Modules import only the standard library at the top;
the heavy work (torch, Lightning, rich, uvicorn) is imported inside ``run`` so the CLI
starts fast.
"""
