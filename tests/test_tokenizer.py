"""Our CLIP tokenizer: the asset files' checksums, ids equal to transformers' CLIPTokenizer built
from the same files, ComfyUI's emphasis syntax and 77-token windows."""

import hashlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeflow.text.make_tokenizer_files import render_merges, render_vocab, vocab_from_merges
from nodeflow.text.prompt_weights import (PromptError, chunks, parse_weights, prompt_windows,
                                          weighted_tokens)
from nodeflow.text.tokenizer import ClipTokenizer, default_tokenizer_dir, load_tokenizer

CHECKSUMS = {  # shared/reference/clip-tokenizer.md
    "vocab.json": "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
}
CAT, RED = 2368, 736  # "cat</w>", "red</w>"


@pytest.fixture(scope="module")
def ours():
    return load_tokenizer()


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    folder = default_tokenizer_dir()
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", sorted(CHECKSUMS))
def test_asset_checksums(name):
    assert sha256((default_tokenizer_dir() / name).read_bytes()) == CHECKSUMS[name]


def test_generator_derives_the_shipped_files_from_the_merges():
    """make_tokenizer_files' derivation, run on the shipped merges, writes both files exactly."""
    lines = (default_tokenizer_dir() / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = lines[1:-1]  # header, ..., final newline
    assert len(merges) == 48894
    assert sha256(render_merges(merges).encode("utf-8")) == CHECKSUMS["merges.txt"]
    vocab = vocab_from_merges(merges)
    assert len(vocab) == 49408
    assert sha256(render_vocab(vocab).encode("utf-8")) == CHECKSUMS["vocab.json"]


def test_known_ids(ours):
    assert ours.tokenize("a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ours.encode("A Photo of a CAT") == [320, 1125, 539, 320, 2368]
    assert ours.tokenize("") == [49406, 49407]
    assert ours.vocab["<|startoftext|>"] == 49406 and ours.vocab["<|endoftext|>"] == 49407


def test_bpe_cache_belongs_to_the_instance(ours):
    other = load_tokenizer()
    other.encode("unmistakably")
    assert "unmistakably" not in "".join(ours._cache)
    assert other.encode("unmistakably") == ours.encode("unmistakably")


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ClipTokenizer.from_dir(tmp_path)


TRICKY = [
    "", " ", "\n\n", "A" * 300, "Hello, World! It's 2026.", "masterpiece, best quality, 8k uhd",
    "ΑΣ ΟΔΟΣ", "İstanbul", "naïve café über", "e\u0301", "日本語のテキスト", "🙂🙂 👍🏽", "ＡＢＣ",
    "x<|endoftext|>y", "don't you'll we've I'M THEY'RE it'S", "3.14159 1,000,000 ①②",
    "&amp; &lt;tag&gt;", "a\u200bb\u2028c\u00a0d\x1ce\x85f", "(red:1.2), [blue], {green}",
    "hello!!! ??? ... --- ___ ~~~", "greg rutkowski, artstation, trending", "tab\tseparated\twords",
]
WORDS = ["a", "photo", "of", "cat", "masterpiece", "best quality", "8k", "ultra-detailed", "don't",
         "it's", "(red:1.2)", "portrait,", "café", "naïve", "über", "日本", "🙂", "42", "3.14",
         "&amp;", "hello!!", "WORLD", "x_y", "foo-bar", "...", "  ", "\n", "tab\t", "greg rutkowski",
         "d'oh", "you'll", "we've", "i'm", "they're", "Σίσυφος", "straße", "ÆØÅ", "\\(x\\)"]


def random_prompts(count: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(count):
        yield " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40)))


def test_matches_transformers_on_tricky_and_random_prompts(ours, reference):
    for prompt in TRICKY + list(random_prompts(200)):
        assert ours.encode(prompt) == reference(prompt, add_special_tokens=False)["input_ids"], repr(prompt)


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cn"]), max_size=30))
def test_matches_transformers_on_any_text(ours, reference, text):
    """Any assigned character. (Code points that Python's Unicode tables leave unassigned are
    left out: the regex module and the Rust tokenizer disagree on them by Unicode version.)"""
    assert ours.encode(text) == reference(text, add_special_tokens=False)["input_ids"]


# ComfyUI's emphasis rules (the examples in ComfyUI's sd1_clip.token_weights documentation)
@pytest.mark.parametrize("prompt, expected", [
    ("(foo)", [("foo", 1.1)]),
    ("(foo)(bar)", [("foo", 1.1), ("bar", 1.1)]),
    ("(foo:2.0)", [("foo", 2.0)]),
    ("((foo))", [("foo", 1.21)]),
    ("((foo):1.1)", [("foo", 1.21)]),
    ("((foo:1.1))", [("foo", 1.1)]),
    ("(foo:0.0)", [("foo", 0.0)]),
    ("((foo:1.0):0.0)", [("foo", 1.0)]),
    ("foo ((((lol (cat:666) attack:100)))) baz",
     [("foo ", 1.0), ("lol ", 100.0), ("cat", 666.0), (" attack", 100.0), (" baz", 1.0)]),
    ("foo ((((lol (cat:666) attack):100))) baz",
     [("foo ", 1.0), ("lol ", 110.0), ("cat", 666.0), (" attack", 110.0), (" baz", 1.0)]),
    ("a (red:1.5) cat", [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]),
    (r"\(literal\) (x:0.5)", [("(literal) ", 1.0), ("x", 0.5)]),
    ("(time: 12:30)", [("time: 12", 30.0)]),
    ("(ratio:wide)", [("ratio:wide", 1.1)]),
    ("(:2)", [(":2", 1.1)]),
    ("[blue]", [("[blue]", 1.0)]),
    ("unclosed (paren", [("unclosed ", 1.0), ("(paren", 1.0)]),
    ("a) (b)", [("a) (b)", 1.0)]),
    ("(a (b)", [("a ", 1.1), ("(b", 1.1)]),
])
def test_weights_parse_like_comfyui(prompt, expected):
    parsed = parse_weights(prompt)
    assert [text for text, _ in parsed] == [text for text, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected])


def test_weighted_tokens_follow_the_segments(ours):
    assert weighted_tokens(ours, "a (red:1.5) cat") == [(320, 1.0), (RED, 1.5), (CAT, 1.0)]


def test_embeddings_without_a_lookup_are_refused_clearly(ours):
    with pytest.raises(PromptError, match="embedding:easynegative: textual-inversion embeddings cannot be used"):
        prompt_windows(ours, "a cat, embedding:easynegative")
    assert weighted_tokens(ours, "no_embedding:here")  # not an embedding reference: text


def tokens_of(window):
    return [token for token, _ in window]


def test_empty_prompt_is_one_window_padded_with_end(ours):
    [window] = prompt_windows(ours, "")
    assert tokens_of(window) == [49406] + [49407] * 76
    assert all(weight == 1.0 for _, weight in window)


def test_75_tokens_fit_one_window_and_76_take_two(ours):
    [window] = prompt_windows(ours, "cat " * 75)
    assert tokens_of(window) == [49406] + [CAT] * 75 + [49407]
    first, second = prompt_windows(ours, "cat " * 76)
    assert tokens_of(first) == [49406] + [CAT] * 75 + [49407]
    assert tokens_of(second) == [49406, CAT, 49407] + [49407] * 74


def test_long_prompt_is_cut_every_75_tokens(ours):
    first, second = prompt_windows(ours, "cat " * 100)
    assert tokens_of(first) == [49406] + [CAT] * 75 + [49407]
    assert tokens_of(second) == [49406] + [CAT] * 25 + [49407] * 51
    assert chunks(weighted_tokens(ours, "cat " * 100)) == [first, second]


def test_words_are_the_groups_that_fill_windows(ours):
    """ComfyUI packs word by word: 72 + 5 one-token words -> 3 end window 1, 2 start window 2."""
    first, second = prompt_windows(ours, "cat " * 72 + "(red red red red red:1.2)")
    assert first[73:] == [(RED, 1.2)] * 3 + [(49407, 1.0)]
    assert second[:4] == [(49406, 1.0)] + [(RED, 1.2)] * 2 + [(49407, 1.0)]


def test_short_word_moves_whole_to_the_next_window(ours):
    word = "supercalifragilistic"  # 5 tokens: under 8, kept together
    tokens = ours.encode(word)
    assert len(tokens) == 5
    first, second = prompt_windows(ours, "cat " * 72 + word)
    assert tokens_of(first) == [49406] + [CAT] * 72 + [49407] * 4
    assert tokens_of(second)[:7] == [49406, *tokens, 49407]


def test_long_word_is_cut_at_the_window_end(ours):
    word = "qwertyuiopasdfghjklzxcvbnm"
    tokens = ours.encode(word)
    assert len(tokens) >= 8
    first, second = prompt_windows(ours, "cat " * 72 + word)
    assert tokens_of(first)[73:] == tokens[:3] + [49407]
    assert tokens_of(second)[:len(tokens) - 2] == [49406, *tokens[3:]]


# Emphasis syntax stripped: the tokens of the parsed segments, concatenated, equal transformers'
# ids of the same text written without the syntax (the text a user means).
STRIPPED = [
    ("(red:1.3) circle", "red circle"),
    (r"((blue)) square, \(literal\)", "blue square, (literal)"),
    ("a (red:1.5) ((cat))", "a red cat"),
    ("masterpiece, (best quality:1.2), ((ultra-detailed)), [blue], {green}",
     "masterpiece, best quality, ultra-detailed, [blue], {green}"),
    ("foo ((((lol (cat:666) attack:100)))) baz", "foo lol cat attack baz"),
    ("(time: 12:30)", "time: 12"),  # the weight is what follows the last colon
    ("(ratio:wide) (:2)", "ratio:wide :2"),  # not a number: the colon is text
    ("unclosed (paren", "unclosed (paren"),
    ("a) (b)", "a) (b)"),
    ("it's (don't:1.1) you'll (WE'VE)", "it's don't you'll WE'VE"),
    ("(don:1.2)'t", "don't"),  # "'t" is a token of its own either way
    ("a (naïve café:0.8) über (日本語のテキスト) 🙂 (👍🏽:1.4)", "a naïve café über 日本語のテキスト 🙂 👍🏽"),
    ("ＡＢＣ (Σίσυφος:1.2) straße İstanbul (e\u0301)", "ＡＢＣ Σίσυφος straße İstanbul e\u0301"),
    ("3.14159 (1,000,000:1.5) ①② (&amp; &lt;tag&gt;)", "3.14159 1,000,000 ①② &amp; &lt;tag&gt;"),
    ("hello!!! (???) ... (--- ___:0.9) ~~~", "hello!!! ??? ... --- ___ ~~~"),
    ("line one\n(line two:1.2)\nline three", "line one\nline two\nline three"),
    ("tab\t(separated:1.1)\twords  (double  spaces)", "tab\tseparated\twords  double  spaces"),
    (r"\(x\) (\(nested\):1.3) \\", r"(x) (nested) \\"),
    ("(a photo of a cat:1.2), " * 30, "a photo of a cat, " * 30),  # 210 tokens: three windows
    ("((" + "supercalifragilistic " * 20 + "))" + " (qwertyuiopasdfghjklzxcvbnm:0.7)" * 5,
     "supercalifragilistic " * 20 + " qwertyuiopasdfghjklzxcvbnm" * 5),
]


@pytest.mark.parametrize("prompt, stripped", STRIPPED)
def test_emphasis_stripped_ids_match_transformers(ours, reference, prompt, stripped):
    assert "".join(text for text, _ in parse_weights(prompt)) == stripped
    expected = reference(stripped, add_special_tokens=False)["input_ids"]
    assert [token for token, _ in weighted_tokens(ours, prompt)] == expected
    # the windows hold the same tokens in the same order (start, end and padding aside)
    content = [token for window in prompt_windows(ours, prompt) for token, _ in window[1:]]
    assert [token for token in content if token != 49407] == expected


def test_emphasis_on_random_prompts_matches_transformers_without_it(ours, reference):
    plain = [word for word in WORDS if not set(word) & set("()\\:")]
    forms = ["{}", "({})", "(({}))", "({}:1.3)", "({}:0.5)", "[{}]"]
    rng = random.Random(1)
    for _ in range(200):
        words = [rng.choice(plain) for _ in range(rng.randint(0, 40))]
        marked = [rng.choice(forms).format(word) for word in words]
        stripped = " ".join(f"[{w}]" if m == f"[{w}]" else w for w, m in zip(words, marked))
        prompt = " ".join(marked)
        expected = reference(stripped, add_special_tokens=False)["input_ids"]
        assert [token for token, _ in weighted_tokens(ours, prompt)] == expected, repr(prompt)


@pytest.mark.parametrize("prompt, segments, joined", [
    ("(a)(b) c", ["a", "b", " c"], "ab c"),
    ("(high:1.2)way", ["high", "way"], "highway"),
    ("red(blue)", ["red", "blue"], "redblue"),
])
def test_segments_are_tokenized_separately_like_comfyui(ours, reference, prompt, segments, joined):
    """Where the syntax glues two segments into one word, the stripped text would be one word
    for CLIP's BPE, but ComfyUI (and we) tokenize each weighted segment on its own, word by word:
    the ids are those of the segments, not of the joined text. ComfyUI's behaviour, kept on purpose
    so that shared prompts encode the same."""
    assert [text for text, _ in parse_weights(prompt)] == segments
    got = [token for token, _ in weighted_tokens(ours, prompt)]
    assert got == [i for text in segments for i in reference(text, add_special_tokens=False)["input_ids"]]
    assert got != reference(joined, add_special_tokens=False)["input_ids"]
