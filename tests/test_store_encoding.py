"""The fast reading encoder writes exactly what the plain one (rfc3339, json.dumps) would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import rfc3339
from gateway.model import Reading, ReadingKind
from gateway.store import Store
from gateway.store.db import _json, _json_value, _ts

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(), st.integers(), max_size=3),
)
times = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)


@given(scalars)
def test_value_encoding_matches_json(value: object) -> None:
    assert _json_value(value) == _json(value)


@given(times)
def test_time_encoding_matches_rfc3339(ts: datetime) -> None:
    assert _ts(ts) == rfc3339(ts)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([True, False, 1, -7, 2.5, 1e16, "press", "数据", None]), times),
        min_size=1,
        max_size=20,
    )
)
def test_readings_round_trip(
    tmp_path_factory: object, items: list[tuple[object, datetime]]
) -> None:
    path = tmp_path_factory.mktemp("enc") / "a.db"  # type: ignore[attr-defined]
    readings = [
        Reading("s", ReadingKind.DISTANCE, v, ts, 1.0, "boot", True, unit="cm", extra={"i": i})
        for i, (v, ts) in enumerate(items)
    ]
    with Store(path) as store:
        store.add_readings(readings)
        back = [r for _id, r in store.readings_after(0, 100)]
    want = [
        Reading(
            r.sensor_id,
            r.kind,
            r.value,
            r.ts.replace(microsecond=r.ts.microsecond // 1000 * 1000).astimezone(UTC),
            r.monotonic_s,
            r.boot_id,
            r.clock_synced,
            unit=r.unit,
            extra=dict(r.extra),
        )
        for r in readings
    ]
    assert back == want
