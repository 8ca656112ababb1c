"""Golden prompt strings, character for character (MiniOneRec's templates)."""
from grporec.data import datasets as D
from grporec.data.catalog import Catalog
from grporec.data.formats import Interaction, ItemInfo, first_description

ROW = Interaction(
    user_id="U1",
    history_titles=("Red Pen", "Blue Ink"),
    history_ids=("1", "2"),
    history_sids=("<a_1><b_2><c_3>", "<a_4><b_5><c_6>"),
    item_title="Stapler",
    item_id="3",
    item_sid="<a_7><b_8><c_9>",
)
PRE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n\n### Instruction:\n"
)


def test_sid_dataset_rl_prompt():
    s = D.SidDataset([ROW])[0]
    assert s.prompt == (
        "### User Input: \nThe user has interacted with items <a_1><b_2><c_3>, <a_4><b_5><c_6> in chronological order. "
        "Can you predict the next possible item that the user may expect?\n\n### Response:\n"
    )
    assert s.completion == "<a_7><b_8><c_9>\n"
    assert s.target_sid == "<a_7><b_8><c_9>" and s.history_sids == ROW.history_sids


def test_eval_prompt_has_preamble_and_own_wording():
    s = D.EvalSidDataset([ROW])[0]
    assert s.prompt == (
        PRE + "Can you predict the next possible item that the user may expect?\n\n### User Input: \n"
        "Can you predict the next possible item the user may expect, given the following chronological "
        "interaction history: <a_1><b_2><c_3>, <a_4><b_5><c_6>\n\n### Response:\n"
    )


def test_title_history_prompt_and_seeded_sample():
    s = D.SeqTitle2SidDataset([ROW], n=10)[0]
    assert s.prompt == (
        "### User Input: \nGiven the title sequence of user historical interactive items: \"Red Pen\", \"Blue Ink\", "
        "can you recommend a suitable next item for the user?\n\n### Response:\n"
    )
    rows = [Interaction("U", ("t",), ("1",), ("<a_1><b_1>",), f"x{i}", str(i), f"<a_{i}><b_1>") for i in range(50)]
    a = [x.target_sid for x in D.SeqTitle2SidDataset(rows, n=10, seed=1)]
    b = [x.target_sid for x in D.SeqTitle2SidDataset(rows, n=10, seed=1)]
    c = [x.target_sid for x in D.SeqTitle2SidDataset(rows, n=10, seed=2)]
    assert a == b and a != c and len(set(a)) == 10


def test_title2sid_title_and_description():
    cat = Catalog.from_items([ItemInfo("<a_1><b_1>", "Pen", "1"), ItemInfo("<a_2><b_1>", "Ink", "2")])
    feats = {"1": {"title": "Pen", "description": "['Writes well.', 'more']"}, "2": {"title": "Ink", "description": ""}}
    ds = D.Title2SidDataset(cat, feats)
    assert [s.prompt for s in ds] == [
        "### User Input: \nWhich item has the title: Pen?\n\n### Response:\n",
        '### User Input: \nAn item can be described as follows: "Writes well.". Which item is it describing?\n\n### Response:\n',
        "### User Input: \nWhich item has the title: Ink?\n\n### Response:\n",
    ]
    assert [s.completion for s in ds] == ["<a_1><b_1>\n", "<a_1><b_1>\n", "<a_2><b_1>\n"]
    assert all(s.prompt.endswith("### Response:\n") and s.target_sid not in s.prompt for s in ds)


def test_sft_prompts():
    cat = Catalog.from_items([ItemInfo("<a_1><b_1>", "Pen", "1")])
    assert D.SftSidDataset([ROW])[0].prompt == (
        PRE + "Can you predict the next possible item that the user may expect?\n\n### User Input: \n"
        "The user has interacted with items <a_1><b_2><c_3>, <a_4><b_5><c_6> in chronological order. "
        "Can you predict the next possible item that the user may expect?\n\n### Response:\n"
    )
    assert D.SftTitle2SidDataset(cat)[0].prompt == (
        PRE + "Answer the question about item identification.\n\n### User Input: \nWhich item has the title: Pen?\n\n### Response:\n"
    )
    s = D.SftSid2TitleDataset(cat)[0]
    assert s.prompt == (
        PRE + "Answer the question about item identification.\n\n### User Input: \n"
        'What is the title of item "<a_1><b_1>"?\n\n### Response:\n'
    )
    assert s.completion == "Pen\n"
    assert D.SftTitleHistoryDataset([ROW])[0].prompt == (
        PRE + "Based on the user's historical interaction with item titles, predict the semantic ID of the next item "
        "they may expect.\n\n### User Input: \nGiven the title sequence of user historical interactive items: "
        "\"Red Pen\", \"Blue Ink\", can you recommend a suitable next item for the user?\n\n### Response:\n"
    )


def test_identical_prompts_keep_their_own_targets():
    other = Interaction(**{**ROW.__dict__, "item_sid": "<a_0><b_0><c_0>"})
    ds = D.SidDataset([ROW, other])
    assert ds[0].prompt == ds[1].prompt
    assert [s.target_sid for s in ds] == ["<a_7><b_8><c_9>", "<a_0><b_0><c_0>"]


def test_history_truncated_to_max():
    long = Interaction("U", tuple("t" * 12), tuple("1" * 12), tuple(f"<a_{i}>" for i in range(12)), "x", "9", "<a_99>")
    assert D.SidDataset([long], max_history=10)[0].history_sids == tuple(f"<a_{i}>" for i in range(2, 12))


def test_mixed_dataset_counts():
    rows = [Interaction("U", ("t",), ("1",), ("<a_1>",), "x", str(i), f"<a_{i}>") for i in range(20)]
    mix = D.MixedDataset([(D.SidDataset(rows), 5), (D.SeqTitle2SidDataset(rows, n=0), None)], seed=0)
    assert len(mix) == 25
    assert mix.sizes == [("SidDataset", 5), ("SeqTitle2SidDataset", 20)]
    assert sum(s.task == "sid_history" for s in mix) == 5


def test_first_description():
    assert first_description("['A thing.', 'b']") == "A thing."
    assert first_description("") == ""
    assert first_description("[]") == ""
    assert first_description("plain text") == "plain text"
    assert first_description(["x", "y"]) == "x"


def test_compact_prompts_are_one_wording_for_every_stage():
    """data.prompt_text=compact: SFT, RL and evaluation build the same short prompt, the history's
    SIDs back to back; title -> SID asks with `title: ...` (descriptions are left out)."""
    expected = "### User Input: \n<a_1><b_2><c_3><a_4><b_5><c_6>\n\n### Response:\n"
    for cls in (D.SidDataset, D.SftSidDataset, D.EvalSidDataset):
        s = cls([ROW], compact=True)[0]
        assert (s.prompt, s.completion, s.target_sid) == (expected, "<a_7><b_8><c_9>\n", "<a_7><b_8><c_9>"), cls
    cat = Catalog([ItemInfo("<a_1><b_2><c_3>", "Red Pen", "1")])
    assert D.SftTitle2SidDataset(cat, compact=True)[0].prompt == "### User Input: \ntitle: Red Pen\n\n### Response:\n"
    feats = {"1": {"title": "Red Pen", "description": ["A pen."]}}
    assert [s.prompt for s in D.Title2SidDataset(cat, feats, compact=True)] == ["### User Input: \ntitle: Red Pen\n\n### Response:\n"]


def test_suffix_samples_predict_the_same_target_from_the_latest_items():
    """History (h1, h2, h3) -> t gives (h2, h3) -> t and (h3) -> t; the full history is sid_history's."""
    row = Interaction("U1", ("x", "y", "z"), ("1", "2", "3"), ("<a_1>", "<a_2>", "<a_3>"), "T", "4", "<a_9>")
    got = D.SftSuffixDataset([row, ROW], compact=True)
    assert [s.history_sids for s in got] == [("<a_2>", "<a_3>"), ("<a_3>",), ("<a_4><b_5><c_6>",)]
    assert all(s.target_sid == t for s, t in zip(got, ["<a_9>", "<a_9>", "<a_7><b_8><c_9>"]))
    assert got[1].prompt == "### User Input: \n<a_3>\n\n### Response:\n"
    assert len(D.SftSuffixDataset([row], max_history=2)) == 1  # the history is cut to (h2, h3) first


def test_markov_samples_keep_the_history_and_draw_what_followed_its_last_item():
    """Last SID <a_1> was followed by <a_8> twice and <a_9> once in these rows, <a_2> by <a_7> only:
    every <a_2> row's drawn target is <a_7>, <a_1> rows draw <a_8> / <a_9> about 2:1, prompts stay the rows'."""
    def row(h, t):
        return Interaction("U", tuple("t" for _ in h), tuple("i" for _ in h), h, "T", "x", t)
    base = [row(("<a_5>", "<a_1>"), "<a_8>"), row(("<a_1>",), "<a_8>"), row(("<a_6>", "<a_1>"), "<a_9>"),
            row(("<a_2>",), "<a_7>"), row((), "<a_3>")]
    rows = base * 300
    got = D.SftMarkovDataset(rows, max_history=1, compact=True, seed=0)
    assert len(got) == 4 * 300  # the row without a history has no last item to follow
    with_history = [r for r in rows if r.history_sids]
    assert [s.history_sids for s in got] == [r.history_sids[-1:] for r in with_history]
    assert [s.prompt for s in got] == [D.SftSidDataset([r], 1, True)[0].prompt for r in with_history]
    after_a2 = {s.target_sid for s in got if s.history_sids == ("<a_2>",)}
    assert after_a2 == {"<a_7>"}
    after_a1 = [s.target_sid for s in got if s.history_sids == ("<a_1>",)]
    assert set(after_a1) == {"<a_8>", "<a_9>"} and abs(after_a1.count("<a_8>") / len(after_a1) - 2 / 3) < 0.05
    assert all(s.completion == s.target_sid + "\n" for s in got)
    assert [s.target_sid for s in D.SftMarkovDataset(rows, 1, True, seed=0)] == [s.target_sid for s in got]  # seeded


def test_transition_samples_are_one_per_distinct_transition_from_its_latest_row():
    """<a_1> -> <a_8> occurs in two rows (histories (<a_5>,<a_1>) then (<a_1>,)), <a_1> -> <a_9> and
    <a_2> -> <a_7> once each, and a row without a history has no transition: three samples, the
    first with the later row's history."""
    def row(h, t):
        return Interaction("U", tuple("t" for _ in h), tuple("i" for _ in h), h, "T", "x", t)
    rows = [row(("<a_5>", "<a_1>"), "<a_8>"), row(("<a_6>", "<a_1>"), "<a_9>"), row(("<a_1>",), "<a_8>"),
            row(("<a_2>",), "<a_7>"), row((), "<a_3>")]
    got = D.SftTransitionDataset(rows, compact=True)
    assert [(s.history_sids, s.target_sid) for s in got] == [
        (("<a_1>",), "<a_8>"), (("<a_6>", "<a_1>"), "<a_9>"), (("<a_2>",), "<a_7>")]
    assert got[0].prompt == D.SftSidDataset([rows[2]], compact=True)[0].prompt
    assert all(s.completion == s.target_sid + "\n" for s in got)
    assert [s.history_sids for s in D.SftTransitionDataset(rows[1:2], max_history=1)] == [("<a_1>",)]
