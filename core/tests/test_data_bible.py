"""bible-en-es: markup cleaning on real diatheke lines, Psalm headings, recasing, the grouped split, the cache."""

import json

import pytest

from dlm_core.data import load_dataset
from dlm_core.data.src_bible import BOOKS, build_pairs, clean_markup, split_pairs
from dlm_core.errors import DlmError

# lines exactly as `diatheke -f internal` prints them (trimmed attributes)
EN = {
    "Genesis": ('Genesis 1:1: <w savlm="strong:H0430">In</w> <w savlm="strong:H0853">the</w> '
                '<w savlm="strong:H7225">beginning</w>, <w savlm="strong:H0430">God</w><w savlm="strong:H1254">'
                'created</w> <w>the</w> <w>heavens</w> <w>and</w> <w>the</w> <w>earth</w>.\n'
                'Genesis 2:1: <w>The</w> <w>heavens</w> were finished.\n'),
    "Psalms": ('<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="g1"/> <l level="1" sID="g2"/>'
               'Psalms 23:1: <w>Yahweh</w> is <w>my</w> shepherd;<l eID="g2" level="1"/> <l level="2" sID="g3"/>'
               'I shall lack nothing.<l eID="g3" level="2"/>\n'
               '<title canonical="true" type="psalm">BETH</title> <l level="1" sID="g4"/>Psalms 119:9: How can a '
               'young man keep his way pure?<l eID="g4" level="1"/>\n'),
}
ES = {
    "Genesis": ('Genesis 1:1: <w savlm="strong:H7225">EN el principio</w> <w>crió</w> <w>Dios</w> los cielos.\n'
                'Genesis 2:1: <w>Y FUERON</w> <w>acabados los cielos</w>.\n'),
    "Psalms": ('Psalms 23:1: Salmo de David. <w>JEHOVÁ</w> es mi pastor; nada me faltará.\n'
               'Psalms 119:9: BETH ¿Con qué limpiará el joven su camino?\n'),
}


def _pairs():
    en = {b: EN.get(b, f"{b} 1:1: x\n") for b in BOOKS}
    es = {b: ES.get(b, "") for b in BOOKS}
    # Jehová and Dios appear capitalised elsewhere, 'fueron' in lower case
    es["Exodus"], en["Exodus"] = "Exodus 1:2: Jehová y Dios fueron.\n", "Exodus 1:2: Yahweh.\n"
    return {r["ref"]: r for r in build_pairs(en, es)}


def test_glued_words_split_and_poetry_lines_become_spaces():
    rows = _pairs()
    assert rows["Genesis 1:1"]["en"] == "In the beginning, God created the heavens and the earth."
    assert rows["Psalms 23:1"]["en"] == "Yahweh is my shepherd; I shall lack nothing."
    assert "A Psalm" not in rows["Psalms 23:1"]["en"]  # the English heading sits before the key: dropped
    assert clean_markup('wise men<w s="1">from</w> the east') == "wise men from the east"
    assert clean_markup('<w>HABIENDO entrado</w><transChange type="added">Jesús</transChange>, <w>iba</w>') == \
        "HABIENDO entrado Jesús, iba"
    assert clean_markup('hay <w>allí</w><transChange>también</transChange><w>bdelio</w>') == "hay allí también bdelio"
    assert clean_markup('<w>sáca</w><transChange type="added">lo</transChange> <w>de este lugar</w>') == \
        "sácalo de este lugar"


def test_spanish_psalm_headings_and_chapter_capitals():
    rows = _pairs()
    assert rows["Psalms 23:1"]["es"] == "Jehová es mi pastor; nada me faltará."
    assert rows["Psalms 119:9"]["es"] == "¿Con qué limpiará el joven su camino?"
    assert rows["Genesis 1:1"]["es"] == "En el principio crió Dios los cielos."
    assert rows["Genesis 2:1"]["es"] == "Y fueron acabados los cielos."


def test_split_is_grouped_by_source_seeded_and_sized():
    pairs = [(f"s{i // 3}", f"t{i}") for i in range(3000)]  # every English sentence three times
    train, val, test = split_pairs(pairs, seed=0, n_test=300, n_val=300)
    assert len(test) == 300 and len(val) == 300 and len(train) == 2400
    sides = [{p[0] for p in s} for s in (train, val, test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert split_pairs(pairs, seed=0, n_test=300, n_val=300)[2] == test
    assert split_pairs(pairs, seed=1, n_test=300, n_val=300)[2] != test


def test_real_corpus_loads_filtered_deduplicated_and_split():
    ds = load_dataset("bible-en-es", seed=0)
    assert len(ds.test) == 1000 and len(ds.val) == 1000 and len(ds.train) > 9000
    every = ds.train + ds.val + ds.test
    assert len(set(every)) == len(every)
    assert max(len(en.split()) for en, _ in every) <= 20
    assert not {en for en, _ in ds.train} & {en for en, _ in ds.test}
    assert not any("<" in en or "<" in es for en, es in every)
    assert ("In the beginning, God created the heavens and the earth.",
            "En el principio crió Dios los cielos y la tierra.") in every
    assert load_dataset("bible-en-es", seed=0).test == ds.test


def test_tampered_cache_is_refused(tmp_path, monkeypatch):
    from dlm_core.data import get_source

    src = get_source("bible-en-es")
    (tmp_path / "bible-en-es").mkdir()
    (tmp_path / "bible-en-es" / "pairs.jsonl").write_text(json.dumps({"ref": "a", "en": "x", "es": "y"}) + "\n")
    (tmp_path / "bible-en-es" / "SOURCE.json").write_text(json.dumps({"sha256": {"pairs.jsonl": "0" * 64}}))
    monkeypatch.setenv("DLM_DATA", str(tmp_path))
    with pytest.raises(DlmError, match="sha256"):
        load_dataset("bible-en-es")
    assert src.path == tmp_path / "bible-en-es"
