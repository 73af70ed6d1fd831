"""llmmesh router: the front door of the mesh."""
