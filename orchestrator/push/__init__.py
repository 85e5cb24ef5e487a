"""The path of a `git push`: git smart HTTP with its access checks (git_http) and the
post-receive hook that deploys `main` and follows the build (git_hook)."""
