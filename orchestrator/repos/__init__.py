"""A Space's repository: the bare git repo (store), reading a commit (tree), writing one
without a checkout (commit) and the Git LFS object store (lfs)."""
