"""Lambda handlers: thin adapters over the ``vqa`` package."""
