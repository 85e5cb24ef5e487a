"""huggingface_hub's auth_check against a running Spaceport: what a script asks before it
starts work on a Space, answered as every other route decides access."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.platform import Platform

# Access itself is decided in one place for both stacks (core/auth.py, unit-tested on both
# databases); this checks the route's answers, once.
pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)


def test_auth_check_answers_read_write_and_hidden(platform: Platform) -> None:
    owner_token = platform.token("ines")
    reader_token = platform.token("jules")
    owner = HfApi(endpoint=platform.url, token=owner_token)
    reader = HfApi(endpoint=platform.url, token=reader_token)
    anonymous = HfApi(endpoint=platform.url, token=False)
    owner.create_repo("ines/open", repo_type="space", space_sdk="static")
    owner.create_repo("ines/closed", repo_type="space", space_sdk="static", private=True)
    try:
        owner.auth_check("ines/open", repo_type="space", write=True)
        owner.auth_check("ines/closed", repo_type="space", write=True)
        reader.auth_check("ines/open", repo_type="space")
        anonymous.auth_check("ines/open", repo_type="space")
        with pytest.raises(HfHubHTTPError) as refused:
            reader.auth_check("ines/open", repo_type="space", write=True)
        assert refused.value.response.status_code == 403
        for api in (reader, anonymous):
            with pytest.raises(RepositoryNotFoundError):  # hidden: answered as missing
                api.auth_check("ines/closed", repo_type="space")
        with pytest.raises(RepositoryNotFoundError):
            owner.auth_check("ines/missing", repo_type="space")
    finally:
        for name in ("open", "closed"):
            platform.delete_space("ines", name, owner_token)
