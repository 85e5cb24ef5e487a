"""A Space as its owner sees it: find and create (registry), its README config (config), owner
actions on the desired state, move and duplicate (lifecycle), and its JWTs (tokens)."""
