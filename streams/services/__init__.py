"""Pure service objects: decode at the edge, call the core, return what to publish."""
