"""The reader-study API: tokens, blinding, answers and their errors, concurrent readers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from medsr.study import Study, create_study
from medsr.web.app import ServeSettings, create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TestClient = pytest.importorskip("fastapi.testclient").TestClient


def _cases(n_cases=3, methods=("hr", "bicubic", "srgan")):
    rng = np.random.default_rng(0)
    return {
        f"case-{c}": {m: rng.normal(100.0, 20.0, (16, 16)) for m in methods} for c in range(n_cases)
    }


@pytest.fixture
def make_study(tmp_path):
    def make(name="s", **options):
        options.setdefault("cases", _cases())
        options.setdefault("readers", 2)
        options.setdefault("seed", 3)
        study = create_study(tmp_path / name, **options)
        tokens = dict(study.issued_tokens)
        study.close()
        client = TestClient(
            create_app(ServeSettings(data_dir=tmp_path / "data", study_dir=tmp_path / name))
        )
        return client, tokens, tmp_path / name

    return make


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_rating_flow_and_blinding(make_study):
    client, tokens, folder = make_study()
    with client:
        info = client.get("/api/study").json()
        assert info["mode"] == "rating" and set(info["scales"]) == {"quality", "usefulness"}
        r = client.post("/api/study/login", json={"token": tokens["reader-1"]})
        assert r.json() == {"reader": "reader-1", "answered": 0, "total": 9}
        items = client.get("/api/study/items", headers=auth(tokens["reader-1"])).json()
        other = client.get("/api/study/items", headers=auth(tokens["reader-2"])).json()
        assert {i["item_id"] for i in items} == {i["item_id"] for i in other}
        assert [i["item_id"] for i in items] != [i["item_id"] for i in other]  # own order
        text = str(items) + str(info)
        assert "bicubic" not in text and "case-" not in text and "srgan" not in text
        first = client.get("/api/study/next", headers=auth(tokens["reader-1"])).json()["item"]
        assert first == items[0]
        png = client.get(first["images"][0], headers=auth(tokens["reader-1"]))
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        body = {"quality": 4, "usefulness": 3, "flags": ["blur"], "comment": " soft "}
        url = f"/api/study/items/{first['item_id']}/answer"
        r = client.post(url, json=body, headers=auth(tokens["reader-1"]))
        assert r.status_code == 200 and r.json()["revision"] == 1 and r.json()["answered"] == 1
        nxt = client.get("/api/study/next", headers=auth(tokens["reader-1"])).json()["item"]
        assert nxt["item_id"] == items[1]["item_id"]
        again = client.get(f"/api/study/items/{first['item_id']}", headers=auth(tokens["reader-1"]))
        assert again.json()["answer"] == {
            "quality": 4,
            "usefulness": 3,
            "flags": ["blur"],
            "comment": "soft",
        }
        r = client.post(url, json=dict(body, quality=5), headers=auth(tokens["reader-1"]))
        assert r.json()["revision"] == 2
    with Study.open(folder) as study:
        (record,) = study.rating_records()
        assert record.quality == 5 and record.reader == "reader-1"


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"quality": 6, "usefulness": 3}, 422, "from 1 to 5"),
        ({"quality": 0, "usefulness": 3}, 422, "from 1 to 5"),
        ({"quality": "3", "usefulness": 3}, 422, "quality"),
        ({"quality": 3.5, "usefulness": 3}, 422, "quality"),
        ({"quality": 3}, 422, "usefulness"),
        ({"quality": 3, "usefulness": 3, "flags": ["nice"]}, 422, "unknown flag"),
        ({"quality": 3, "usefulness": 3, "comment": "x" * 2001}, 422, "2000"),
        ({"choice": "left"}, 422, "quality and usefulness"),
    ],
)
def test_invalid_answers_are_422(make_study, body, status, text):
    client, tokens, _ = make_study()
    with client:
        item = client.get("/api/study/next", headers=auth(tokens["reader-1"])).json()["item"]
        r = client.post(
            f"/api/study/items/{item['item_id']}/answer",
            json=body,
            headers=auth(tokens["reader-1"]),
        )
        assert r.status_code == status
        assert text in str(r.json()["detail"])


def test_tokens_items_and_changes(make_study):
    client, tokens, _ = make_study(allow_changes=False)
    with client:
        assert client.get("/api/study/next").status_code == 401
        assert client.get("/api/study/next", headers=auth("nope")).status_code == 401
        assert client.post("/api/study/login", json={"token": "nope"}).status_code == 401
        h = auth(tokens["reader-1"])
        assert client.get("/api/study/items/0123456789abcdef", headers=h).status_code == 404
        assert client.get("/api/study/items/..%2Fx", headers=h).status_code == 404
        assert client.get("/api/study/images/0123456789abcdef", headers=h).status_code == 404
        item = client.get("/api/study/next", headers=h).json()["item"]
        assert client.get(item["images"][0]).status_code == 401  # images need a token too
        url = f"/api/study/items/{item['item_id']}/answer"
        body = {"quality": 3, "usefulness": 3}
        assert client.post(url, json=body, headers=h).status_code == 200
        r = client.post(url, json=body, headers=h)
        assert r.status_code == 409 and "does not allow" in r.json()["detail"]


def test_pairwise_mode(make_study):
    client, tokens, folder = make_study(mode="pairwise", cases=_cases(2, ("hr", "srgan")))
    with client:
        h = auth(tokens["reader-2"])
        item = client.get("/api/study/next", headers=h).json()["item"]
        assert len(item["images"]) == 2
        url = f"/api/study/items/{item['item_id']}/answer"
        assert client.post(url, json={"quality": 3, "usefulness": 3}, headers=h).status_code == 422
        assert client.post(url, json={"choice": "middle"}, headers=h).status_code == 422
        r = client.post(url, json={"choice": "left", "comment": "sharper"}, headers=h)
        assert r.status_code == 200
    with Study.open(folder) as study:
        (record,) = study.preference_records()
        assert record.preferred == record.left and record.comment == "sharper"


def test_concurrent_readers_lose_no_answers(make_study):
    client, tokens, folder = make_study(readers=4, cases=_cases(4))
    with client:
        # one thread per reader, all answering at once through the same server
        assert len(tokens) == 4
        errors = []

        def read_all(token):
            h = auth(token)
            try:
                for item in client.get("/api/study/items", headers=h).json():
                    r = client.post(
                        f"/api/study/items/{item['item_id']}/answer",
                        json={"quality": 3, "usefulness": 4},
                        headers=h,
                    )
                    assert r.status_code == 200, r.text
            except Exception as error:  # reported below, from the main thread
                errors.append(error)

        threads = [threading.Thread(target=read_all, args=(t,)) for t in tokens.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    with Study.open(folder) as study:
        assert len(study.rating_records()) == 4 * 12
        assert all(p.answered == p.total == 12 for p in study.reader_progress())
