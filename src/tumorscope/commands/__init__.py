"""The ``tumorscope`` sub-commands, one small module each.

Every module exposes ``add_parser(sub)``, which builds the sub-command's parser and sets
``handler`` to its ``run(args) -> int``. At the top, modules import only the standard library
and light tumorscope modules (errors, locations); the heavy work (torch, Lightning, rich,
uvicorn) is imported inside ``run`` so the CLI starts fast.
"""
