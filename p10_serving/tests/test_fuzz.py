"""Fuzz every route of the OpenAPI schema (hypothesis, small fixed budget): random JSON bodies, the schema's
fields filled with random JSON, and the docs' own examples with one value replaced. Whatever comes in, the
answer is never a 5xx, and an error is always a JSON {"error": "..."}."""

import copy

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p10_serving.app import ServeConfig, create_app

SCALARS = (st.none() | st.booleans() | st.integers(-2**1100, 2**1100) | st.text(max_size=20)
           | st.floats(allow_nan=False, allow_infinity=False))
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
                    max_leaves=30)


@pytest.fixture(scope="module")
def app_and_spec(predictors):
    with TestClient(create_app(list(predictors.values()), ServeConfig(max_request_rows=16))) as c:
        yield c, c.get("/openapi.json").json()


def routes(spec: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def mutate(data, draw):
    """The example with one value somewhere inside it replaced by random JSON."""
    data = copy.deepcopy(data)
    parent, key = None, None
    node = data
    for _ in range(draw(st.integers(1, 5))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    if parent is None:
        return draw(JSON)
    parent[key] = draw(JSON)
    return data


@st.composite
def requests(draw, spec):
    method, path, op = draw(st.sampled_from(routes(spec)))
    name = draw(st.sampled_from(["img", "anom", "txt", "search"]) | st.text("abc/%.", min_size=1, max_size=5))
    version = draw(st.just("1") | st.text("0123", min_size=1, max_size=3))
    url = path.replace("{name}", name).replace("{version}", version)
    body = None
    if "requestBody" in op:
        content = op["requestBody"]["content"]["application/json"]
        examples = [e["value"] for e in content.get("examples", {}).values()]
        ref = content["schema"].get("$ref", "").split("/")[-1]
        fields = spec["components"]["schemas"].get(ref, {}).get("properties", {})
        kind = draw(st.sampled_from(["json", "fields", "example"] if examples else ["json", "fields"]))
        if kind == "json":
            body = draw(JSON)
        elif kind == "fields":
            body = draw(st.fixed_dictionaries({}, optional={k: JSON for k in fields}))
        else:
            body = mutate(draw(st.sampled_from(examples)), draw)
    return method, url, body


def test_no_route_answers_5xx_whatever_it_is_sent(app_and_spec):
    client, spec = app_and_spec

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests(spec))
    def check(req):
        method, url, body = req
        r = client.request(method, url, json=body) if body is not None or method == "post" else client.get(url)
        assert r.status_code < 500, (method, url, body, r.text)
        if r.status_code >= 400:
            assert isinstance(r.json().get("error"), str) and r.json()["error"], r.text

    check()
