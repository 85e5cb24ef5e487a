"""The processes of an installation: `spaceport up` and its children (up), and how a child
dies with its parent (lifeline)."""
