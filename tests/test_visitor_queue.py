"""The visitor queue end to end, on a real `spaceport up` (both stacks: the in-memory queue,
and Redis): a Space whose owner set a concurrency of 1 lets the first browser in, gives the
second the waiting page at place 1, and lets it in once the first has gone idle
(SPACEPORT_VISITOR_IDLE_SECONDS is short on the test platform: tests/conftest.py).
"""

from __future__ import annotations

import time

import httpx

from tests.platform import Platform, push, sample_checkout

BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
SETTLE_SECONDS = 60  # at most, for the gateway to hear the new concurrency (it is ms)


def test_a_second_visitor_waits_in_line_and_gets_in_when_the_first_goes_idle(
    platform: Platform, workdir: object
) -> None:
    token = platform.token("quinn")
    repo = sample_checkout("static_site", workdir)  # type: ignore[arg-type]
    push(repo, platform.git_url("quinn", "queue", token))
    assert platform.wait_for_stage("quinn", "queue", timeout=300)["stage"] == "RUNNING"
    url = platform.app_url("quinn", "queue")
    first = httpx.Client(headers=BROWSER, timeout=30)
    second = httpx.Client(headers=BROWSER, timeout=30)
    deadline = time.monotonic() + SETTLE_SECONDS
    while first.get(url).status_code != 200:  # served once the gateway read RUNNING
        assert time.monotonic() < deadline, "the gateway never served the Space"
        time.sleep(0.5)
    answer = httpx.put(
        f"{platform.url}/api/spaces/quinn/queue/settings",
        json={"visitorConcurrency": 1},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert platform.runtime("quinn", "queue")["visitorConcurrency"] == 1

    try:
        # Until the gateway has the new limit, both get in; then the second one waits.
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            assert first.get(url).status_code == 200  # the first keeps its slot: it is active
            waiting = second.get(url)
            if waiting.status_code == 503 or time.monotonic() > deadline:
                break
            second.cookies.clear()  # a new visitor each time, until the limit applies
            time.sleep(0.5)
        assert waiting.status_code == 503, waiting.text
        assert waiting.headers["retry-after"]
        assert 'id="place">1<' in waiting.text
        place = second.get(f"{url}/.spaceport/queue").json()
        assert place["position"] == 1 and place["doing"] == "busy" and not place["admitted"]

        # The first visitor stops; the second one's page keeps asking, and gets in.
        deadline = time.monotonic() + SETTLE_SECONDS
        while not place["admitted"] and time.monotonic() < deadline:
            time.sleep(1)
            place = second.get(f"{url}/.spaceport/queue").json()
        assert place["admitted"] and place["ready"], place
        page = second.get(url)
        assert page.status_code == 200 and "Static" in page.text
        # Now the first is the one who waits, at the back of the line.
        assert 'id="place">1<' in first.get(url).text
    finally:
        first.close()
        second.close()
        platform.delete_space("quinn", "queue", token)
