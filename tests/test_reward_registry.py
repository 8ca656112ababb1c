"""The reward registry: built-in names, `register_reward` for forks, and a user's own
`package.module:function` run by name from a config with no edit to grporec."""
import textwrap

import pytest
import torch

from conftest import ENV, run_loop, tiny_loop_cfg
from grporec import loop
from grporec.rewards import REWARDS, RewardInputs, RewardSet, import_reward, register_reward, resolve_rewards

USER_MODULE = textwrap.dedent('''
    import torch

    def rank_reward(x):
        """Each completion's position in its group, as a float (0 .. G-1)."""
        return x.ranks.float()

    def short(x):
        return torch.zeros(1)

    def nan(x):
        return torch.full((len(x.completions),), float("nan"))

    not_a_function = 3
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_users_reward_runs_by_name_from_the_config(tiny_cfg, tiny_model_dir, tmp_path):
    """`python -m grporec.loop` in a directory holding my_rewards.py, with reward.names=[rule,
    my_rewards:rank_reward]: the user's function is imported, scored and logged."""
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1",
                        "reward.names=[rule, 'my_rewards:rank_reward']", "reward.weights=[1.0, 0.0]")
    [step] = run_loop(cfg)
    G = cfg.rl.num_generations
    assert step["rewards/my_rewards:rank_reward"] == pytest.approx((G - 1) / 2)  # mean of 0 .. G-1 = 3.5 for G = 8
    assert step["reward"] == pytest.approx(step["rewards/rule"])  # weight 0: the total is the rule reward alone


def test_user_reward_errors_name_the_problem(user_module):
    with pytest.raises(ValueError, match=r"cannot import 'no_such_module' for the reward 'no_such_module:f'"):
        resolve_rewards("rule", ["no_such_module:f"])
    with pytest.raises(ValueError, match=r"my_rewards.py has no 'missing'"):
        resolve_rewards("rule", ["my_rewards:missing"])
    with pytest.raises(ValueError, match="'my_rewards:not_a_function' is a int, not a function"):
        import_reward("my_rewards:not_a_function")
    with pytest.raises(ValueError, match="must look like package.module:function"):
        resolve_rewards("rule", [":f"])
    x = RewardInputs(["<a_1>", None], ["<a_1>"], 2, torch.arange(2))
    with pytest.raises(ValueError, match=r"'my_rewards:short' returned \(1,\); a reward returns a tensor \[B\*G\] = \(2,\)"):
        RewardSet(resolve_rewards("rule", ["my_rewards:short"]))(x)
    with pytest.raises(ValueError, match=r"'my_rewards:nan' returned a non-finite value \(row 0\)"):
        RewardSet(resolve_rewards("rule", ["my_rewards:nan"]))(x)


def test_a_bad_reward_name_stops_the_loop_before_any_work(tiny_cfg, tiny_model_dir, tmp_path):
    for override, message in (("reward.reward_type=exact", "reward.reward_type: unknown 'exact'"),
                              ("reward.names=[rule, bleu]", "reward.names: unknown reward 'bleu'")):
        cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", override)
        with pytest.raises(ValueError, match=message):
            loop.train(cfg, ENV)
        assert not (tmp_path / "run").exists()  # nothing written


def test_register_reward_adds_a_name_for_forks():
    def first_row(x):
        return (x.ranks == 0).float()

    register_reward("first_row", first_row)
    try:
        x = RewardInputs(["<a_1>", "<a_2>", "<a_1>", "<a_2>"], ["<a_1>", "<a_2>"], 2, torch.arange(2).repeat(2))
        total, m = RewardSet(resolve_rewards("rule", ["first_row", "rule"], [2.0, 1.0]))(x)
        # first_row = [1, 0, 1, 0]; rule = [1, 0, 0, 1]; total = 2 * first_row + rule
        torch.testing.assert_close(total, torch.tensor([3.0, 0.0, 2.0, 1.0]))
        assert m["rewards/first_row"] == 0.5
        with pytest.raises(ValueError, match="'first_row' is already registered"):
            register_reward("first_row", first_row)
        with pytest.raises(ValueError, match="may not contain ':'"):
            register_reward("a:b", first_row)
    finally:
        REWARDS.pop("first_row")


def test_the_documented_example_reward_works(tmp_path, monkeypatch):
    from conftest import ROOT

    text = (ROOT / "docs" / "variants.md").read_text()
    code = text.split("# my_rewards.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_rewards.py").write_text(code)  # its own name: my_rewards is already imported above
    monkeypatch.syspath_prepend(str(tmp_path))
    # two prompts x G = 2; targets <a_1><b_1> and <a_2><b_2>; completions in and out of the target's first level
    x = RewardInputs(["<a_1><b_2>", "<a_3><b_1>", "<a_2><b_2>", None], ["<a_1><b_1>", "<a_2><b_2>"], 2, torch.arange(2).repeat(2),
                     level_codes=torch.tensor([[1, 2], [3, 1], [2, 2], [-1, -1]]), target_codes=torch.tensor([[1, 1], [2, 2]]))
    total, m = RewardSet(resolve_rewards("rule", ["readme_rewards:same_first_level"]))(x)
    torch.testing.assert_close(total, torch.tensor([1.0, 0.0, 1.0, 0.0]))
