"""The pre-receive hook of every Space repo: a push may not take a Space past
SPACEPORT_MAX_REFS_PER_SPACE branches and tags, the limit create_branch and create_tag keep.

A plain shell script with the limit written in when the server starts (install_hooks
rewrites the hooks then): every push runs it, so it starts no Python, and only a push that
creates refs runs one `git for-each-ref`. What it prints the pusher sees as `remote:` lines;
a non-zero exit makes git refuse the whole push, with nothing changed.
"""

from __future__ import annotations

from orchestrator.repos.store import ZERO_SHA

HOOK_NAME = "pre-receive"


def script(limit: int) -> str:
    """The hook's text for a limit of `limit` branches and tags."""
    return f"""#!/bin/sh
# Spaceport: at most {limit} branches and tags per Space (SPACEPORT_MAX_REFS_PER_SPACE).
zero={ZERO_SHA}
change=0
while read -r old new ref; do
  case "$ref" in refs/heads/*|refs/tags/*) ;; *) continue ;; esac
  if [ "$old" = "$zero" ] && [ "$new" != "$zero" ]; then change=$((change + 1)); fi
  if [ "$new" = "$zero" ] && [ "$old" != "$zero" ]; then change=$((change - 1)); fi
done
[ "$change" -le 0 ] && exit 0
have=$(git for-each-ref --format=x refs/heads refs/tags | wc -l)
total=$((have + change))
if [ "$total" -gt {limit} ]; then
  echo "This push would make $total branches and tags, over the limit of {limit}" \\
    "(SPACEPORT_MAX_REFS_PER_SPACE): delete some first (git push origin :name)" >&2
  exit 1
fi
exit 0
"""
