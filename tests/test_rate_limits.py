"""The documented per-key limits: 429 in the error envelope with Retry-After and X-RateLimit-Type."""

from __future__ import annotations

import concurrent.futures
import datetime as dt

import pytest

from engine.errors import RateLimited
from engine.rate_limits import RateLimiter, bucket_for, configured_limits
from tests.conftest import API, running_api

EMBED = {"input": "hello", "model": "MiniLM_L6_v2"}


@pytest.fixture
def limiter(settings):
    from engine.database import Database

    settings.ensure_dirs()
    return RateLimiter(Database(settings.db_path), configured_limits({}))


def test_minute_window_refuses_with_the_seconds_left(limiter):
    now = 1_700_000_000.0
    for i in range(3):
        limiter.hit("a", "basic", "txt2img", now=now + i)
    with pytest.raises(RateLimited) as refused:
        limiter.hit("a", "basic", "txt2img", now=now + 20)
    assert refused.value.limit_type == "minute" and refused.value.retry_after == 40
    limiter.hit("b", "basic", "txt2img", now=now + 20)  # another key has its own window
    limiter.hit("a", "basic", "txt2img", now=now + 60)  # the window started at the first request


def test_daily_limit_resets_at_midnight_utc(limiter):
    midnight = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp()
    start = midnight - 920  # fifteen requests a minute apart, the last one 66 s before midnight
    for i in range(15):
        limiter.hit("a", "basic", "txt2video", now=start + i * 61)
    with pytest.raises(RateLimited) as refused:
        limiter.hit("a", "basic", "txt2video", now=midnight - 5)
    assert refused.value.limit_type == "day" and refused.value.retry_after == 5
    limiter.hit("a", "basic", "txt2video", now=midnight + 1)


def test_basic_whisper_routes_share_one_limit_premium_do_not():
    assert {bucket_for(r, "basic") for r in ("vid2txt", "videofile2txt", "aud2txt", "audiofile2txt")} == {"whisper"}
    assert len({bucket_for(r, "premium") for r in ("vid2txt", "videofile2txt", "aud2txt", "audiofile2txt")}) == 4
    assert bucket_for("txt2img/price-calculation", "basic") == "price-calculation"
    assert bucket_for("request-status/abc", "premium") == "request-status"


def test_premium_has_no_daily_cap_and_owner_keys_no_limit(limiter):
    for i in range(1000):
        limiter.hit("p", "premium", "txt2img", now=1_700_000_000.0 + i * 0.3 * 61)  # under 300 a minute
    for _ in range(1000):
        limiter.hit("o", "unlimited", "txt2img")


def test_overrides_come_from_settings(settings):
    limits = configured_limits({"basic": {"txt2img": [0, 2]}})
    assert limits["basic"]["txt2img"].per_minute is None and limits["basic"]["txt2img"].per_day == 2


def test_http_429_envelope_and_headers_and_unlimited_routes(settings):
    with running_api(settings, tier="basic", balance=5.0) as api:
        for _ in range(10):
            assert api.post("txt2embedding", json=EMBED).status_code == 200
        refused = api.post("txt2embedding", json=EMBED)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) in range(1, 61)
        assert refused.headers["x-ratelimit-type"] == "minute"
        body = refused.json()
        assert body["statusCode"] == 429 and body["message"] and body["data"] is None
        # balance and models are never limited; other buckets are counted on their own.
        for _ in range(20):
            assert api.get("balance").status_code == 200
        assert api.post("txt2embedding/price-calculation", json=EMBED).status_code == 200

        # The OpenAI route runs the same task, so it is refused alike for this key.
        openai = api.client.post("/v1/embeddings", json={"input": "x", "model": "MiniLM_L6_v2"}, headers=api.headers)
        assert openai.status_code == 429


def test_whisper_limit_is_shared_across_the_four_routes_for_basic(settings):
    with running_api(settings, tier="basic", balance=5.0) as api:
        first = api.post("audiofile2txt", files={"audio": ("a.wav", b"not audio", "audio/wav")}, data={"model": "WhisperBase"})
        assert first.status_code != 429  # counted (even though the upload is refused as 422)
        second = api.post("vid2txt", json={"video_url": "https://example.com/v.mp4", "model": "WhisperBase"})
        assert second.status_code == 429


def test_balance_never_goes_negative_under_concurrent_jobs(settings):
    settings = settings.model_copy(update={"rate_limits_enabled": False})
    with running_api(settings, tier="basic", balance=0.0) as api:
        account = api.engine.accounts.authenticate(api.key)
        price = api.post("txt2embedding/price-calculation", json=EMBED).json()["data"]["price"]
        api.engine.accounts.credit(account.id, price * 7.5)

        def submit(_):
            return api.post("txt2embedding", json=EMBED).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(submit, range(24)))
        assert codes.count(200) == 7 and codes.count(422) == 17
        assert api.engine.accounts.balance(account.id) >= 0
