"""The assembled DMF2Mel: any length, unknown subjects, switches, sharing, fusion chain, validation."""

import json
import time

import pytest
import torch

from dmf2mel.errors import DataError, UserError
from dmf2mel.models import DMF2Mel, DMF2MelConfig, format_summary, summary
from dmf2mel.models.dmf2mel import CROSS_ATTENTION_CHAIN, sinusoidal_position_encoding
from dmf2mel.viz.models import saved_tensor_bytes

N_SUBJECTS = 5
# Small and quick: the reference scan keeps these tests independent of the numba kernel's compile time.
TINY = dict(
    n_subjects=N_SUBJECTS,
    d_model=16,
    d_inner=32,
    d_state=4,
    d_ff_mamba=32,
    n_hams_repeats=2,
    n_dcfam_repeats=2,
    n_cross_layers=2,
    hams_reduction=4,
    hams_n_bottleneck_adaf=1,
    scan_backend="reference",
)


def tiny(**overrides) -> DMF2MelConfig:
    return DMF2MelConfig.small(**{**TINY, **overrides})


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return DMF2Mel(DMF2MelConfig.small(n_subjects=N_SUBJECTS)).eval()


@pytest.mark.parametrize("length", [64, 65, 640, 1920])
def test_small_config_any_length(small_model, length):
    eeg = torch.randn(2, length, 64)
    with torch.no_grad():
        mel = small_model(eeg, torch.tensor([0, 3]))
    assert mel.shape == (2, length, 10)
    assert torch.isfinite(mel).all()


def test_unknown_subjects(small_model):
    torch.manual_seed(1)
    eeg = torch.randn(2, 64, 64)
    with torch.no_grad():
        all_unknown = small_model(eeg, None)
        minus_one = small_model(eeg, torch.tensor([-1, -1]))
        mixed = small_model(eeg, torch.tensor([2, -1]))
        known = small_model(eeg, torch.tensor([2, 2]))
    torch.testing.assert_close(minus_one, all_unknown)
    torch.testing.assert_close(mixed[1], all_unknown[1])
    torch.testing.assert_close(mixed[0], known[0])
    assert not torch.allclose(known[0], all_unknown[0])  # the subject matters


def test_unknown_row_is_the_extra_embedding_row(small_model):
    assert small_model.subject_embedding.num_embeddings == N_SUBJECTS + 1
    assert small_model.unknown_subject == N_SUBJECTS


def test_subject_dropout_replaces_ids_in_training_only():
    torch.manual_seed(2)
    config = tiny(subject_dropout=0.999999, dropout=0.0, attn_dropout=0.0)
    model = DMF2Mel(config).train()
    eeg = torch.randn(3, 32, 64)
    # batch-norm statistics are the same in both calls, so dropping every id equals passing None
    torch.testing.assert_close(model(eeg, torch.tensor([0, 1, 2])), model(eeg, None))
    model.eval()
    assert not torch.allclose(model(eeg, torch.tensor([0, 1, 2])), model(eeg, None))


def test_head_single():
    model = DMF2Mel(tiny(head="single")).eval()
    assert model(torch.randn(2, 40, 64)).shape == (2, 40, 1)


@pytest.mark.parametrize(
    "switch",
    [
        dict(use_hams=False),
        dict(use_dcfam=False),
        dict(use_splinemap=False),
        dict(use_mamba=False),
        dict(head="single"),
        dict(share_hams=False),
        dict(share_dcfam=False),
        dict(share_convmamba=False, n_convmamba_repeats=2),
        dict(share_fusion_self_attention=False),
    ],
    ids=lambda switch: ",".join(f"{k}={v}" for k, v in switch.items()),
)
def test_each_switch_runs_and_changes_the_parameter_count(switch):
    torch.manual_seed(3)
    baseline = DMF2Mel(tiny(n_convmamba_repeats=switch.get("n_convmamba_repeats", 1)))
    switched = DMF2Mel(tiny(**switch))
    assert n_parameters(switched) != n_parameters(baseline)
    out = switched.eval()(torch.randn(2, 33, 64), torch.tensor([0, -1]))
    assert out.shape[:2] == (2, 33) and torch.isfinite(out).all()


def test_switched_off_branches_are_absent():
    model = DMF2Mel(tiny(use_hams=False, use_dcfam=False, use_mamba=False))
    assert len(model.hams) == 0 and len(model.dcfam) == 0
    assert all(block.bimamba is None for block in model.convmamba)


def test_weight_sharing_is_one_instance():
    shared = DMF2Mel(tiny(n_hams_repeats=3, n_dcfam_repeats=3, n_convmamba_repeats=2))
    assert len(shared.hams) == 3 and len({id(block) for block in shared.hams}) == 1
    assert len({id(block) for block in shared.dcfam}) == 1
    assert len({id(block) for block in shared.convmamba}) == 1
    assert shared.hams_self_attention is shared.dcfam_self_attention
    separate = DMF2Mel(tiny(n_hams_repeats=3, share_hams=False, share_fusion_self_attention=False))
    assert len({id(block) for block in separate.hams}) == 3
    assert separate.hams_self_attention is not separate.dcfam_self_attention
    hams_size = n_parameters(shared.hams)
    assert n_parameters(separate) - n_parameters(shared) == 2 * hams_size + n_parameters(shared.hams_self_attention)


def test_fusion_follows_the_cross_attention_chain():
    """Each cross-attention layer gets the query and key/value streams the official chain names."""
    torch.manual_seed(4)
    model = DMF2Mel(tiny(n_cross_layers=7, share_fusion_self_attention=False, share_first_cross_attention=False)).eval()
    seen = {}

    def keep_output(name):
        return lambda module, args, output: seen.__setitem__(name, output)

    def keep_inputs(index):
        return lambda module, args: seen.__setitem__(f"in{index}", args)

    model.hams_self_attention.register_forward_hook(keep_output("hams"))
    model.dcfam_self_attention.register_forward_hook(keep_output("dcfam"))
    for index, layer in enumerate(model.cross_attention):
        layer.register_forward_pre_hook(keep_inputs(index))
        layer.register_forward_hook(keep_output(f"out{index}"))
    model(torch.randn(1, 24, 64))
    for index in range(7):
        query_name, kv_name = CROSS_ATTENTION_CHAIN[index % 6]
        expected = [seen[f"out{index - 1}"] if name == "fused" else seen[name] for name in (query_name, kv_name)]
        query, key_value = seen[f"in{index}"]
        assert query is expected[0] and key_value is expected[1], index


def test_gradients_reach_every_parameter():
    torch.manual_seed(5)
    model = DMF2Mel(tiny(share_fusion_self_attention=False, n_convmamba_repeats=1)).train()
    # zero-initialised residual gates (HAMS-Net's attentions) block the gradient to what they gate
    # at initialisation, by design; open them so that every path is exercised
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.fill_(0.1)
    out = model(torch.randn(2, 40, 64), torch.tensor([1, -1]))
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_training_is_not():
    torch.manual_seed(6)
    model = DMF2Mel(tiny(dropout=0.3))
    eeg, subject = torch.randn(2, 48, 64), torch.tensor([0, 4])
    model.eval()
    torch.testing.assert_close(model(eeg, subject), model(eeg, subject), rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(eeg, subject), model(eeg, subject))


def test_input_projection_only_when_channels_differ():
    assert isinstance(DMF2Mel(tiny(d_model=64, hams_reduction=16)).input_proj, torch.nn.Identity)
    model = DMF2Mel(tiny(n_chans=32))
    assert isinstance(model.input_proj, torch.nn.Linear) and model.input_proj.in_features == 32
    assert model.eval()(torch.randn(1, 20, 32)).shape == (1, 20, 10)


@pytest.mark.parametrize(
    "eeg, subject, message",
    [
        (torch.randn(2, 64, 63), None, r"\(batch, time, 64\).*\(2, 64, 63\)"),
        (torch.randn(64, 64), None, r"\(64, 64\)"),
        (torch.zeros(2, 64, 64, dtype=torch.long), None, "floating-point"),
        (torch.randn(2, 64, 64), torch.tensor([0, N_SUBJECTS]), r"\[0, 5\) or -1.*\[5\]"),
        (torch.randn(2, 64, 64), torch.tensor([-2, 0]), r"-1.*\[-2\]"),
        (torch.randn(2, 64, 64), torch.tensor([0]), r"subject must have shape \(2,\)"),
        (torch.randn(2, 64, 64), torch.tensor([0.0, 1.0]), "integer tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(small_model, eeg, subject, message):
    with pytest.raises(DataError, match=message):
        small_model(eeg, subject)
    assert issubclass(DataError, ValueError)


def test_config_round_trip_and_errors():
    config = DMF2MelConfig.small(n_subjects=12, hams_position_window=128)
    restored = DMF2MelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert DMF2MelConfig.from_dict({"d_model": 32}) == DMF2MelConfig(d_model=32)
    with pytest.raises(UserError, match=r"unknown keys \['n_layers'\]"):
        DMF2MelConfig.from_dict({**config.to_dict(), "n_layers": 3})
    with pytest.raises(UserError, match="head"):
        DMF2MelConfig(head="mel")
    with pytest.raises(UserError, match="n_heads=3 must divide d_model=64"):
        DMF2MelConfig(n_heads=3)
    with pytest.raises(UserError, match="subject_dropout"):
        DMF2MelConfig(subject_dropout=1.0)
    with pytest.raises(UserError, match="scan_backend"):
        DMF2MelConfig(scan_backend="tpu")
    with pytest.raises(UserError, match="n_cross_layers"):
        DMF2MelConfig(n_cross_layers=0)
    with pytest.raises(AttributeError):
        config.d_model = 8  # frozen


def test_checkpoint_round_trip_with_shared_blocks(tmp_path):
    torch.manual_seed(8)
    config = tiny(n_hams_repeats=3, n_convmamba_repeats=2)
    model = DMF2Mel(config).eval()
    torch.save({"config": config.to_dict(), "state": model.state_dict()}, tmp_path / "model.pt")
    saved = torch.load(tmp_path / "model.pt")
    restored = DMF2Mel(DMF2MelConfig.from_dict(saved["config"])).eval()
    restored.load_state_dict(saved["state"], strict=True)
    assert restored.hams[0] is restored.hams[2]  # sharing survives loading
    eeg, subject = torch.randn(2, 30, 64), torch.tensor([1, -1])
    torch.testing.assert_close(restored(eeg, subject), model(eeg, subject), rtol=0, atol=0)


def test_paper_preset_has_the_official_sizes():
    paper = DMF2MelConfig.paper()
    assert paper == DMF2MelConfig()
    official = dict(
        d_model=64, n_heads=2, d_inner=1024, dropout=0.5, attn_dropout=0.1, d_state=128, d_conv=4, expand=2,
        d_ff_mamba=2048, n_hams_repeats=6, n_dcfam_repeats=4, n_cross_layers=6, n_convmamba_repeats=2,
    )  # fmt: skip
    assert {name: getattr(paper, name) for name in official} == official
    assert paper.share_hams and paper.share_dcfam and paper.share_convmamba and paper.share_fusion_self_attention
    small = DMF2MelConfig.small(d_state=8)
    assert small.d_state == 8 and small.d_model < paper.d_model


def test_position_encoding():
    encoding = sinusoidal_position_encoding(50, 7)
    assert encoding.shape == (50, 7)
    torch.testing.assert_close(encoding[0], torch.tensor([0.0, 1, 0, 1, 0, 1, 0]))
    t, i = 13, 2  # feature 2i is sin(t / 10000^(2i/d)), feature 2i+1 the cosine
    angle = torch.tensor(t / 10000 ** (2 * i / 7))
    torch.testing.assert_close(encoding[t, 2 * i], torch.sin(angle))
    torch.testing.assert_close(encoding[t, 2 * i + 1], torch.cos(angle))
    # any length: a prefix of a longer encoding
    torch.testing.assert_close(sinusoidal_position_encoding(1920, 64)[:50], sinusoidal_position_encoding(50, 64))


def test_summary_rows_add_up_and_name_shared_layers():
    model = DMF2Mel(tiny())
    rows = summary(model)
    by_name = {row.name: row for row in rows}
    assert [row.name for row in rows][:3] == ["input_proj", "subject_embedding", "subject_norm"]
    assert sum(row.parameters for row in rows) == n_parameters(model)
    assert sum(row.share for row in rows) == pytest.approx(1.0)
    # the first cross-attention layer is the self-attention layer (counted in its row)
    reused = n_parameters(model.hams_self_attention)
    assert by_name["cross_attention"].parameters == n_parameters(model.cross_attention) - reused
    assert by_name["cross_attention"].shared_with == "hams_self_attention"
    assert by_name["hams"].parameters == n_parameters(model.hams[0])  # shared: counted once
    shared = by_name["dcfam_self_attention"]
    assert shared.parameters == 0 and shared.shared_with == "hams_self_attention"
    text = format_summary(model)
    assert f"{n_parameters(model):,}" in text.splitlines()[-1] and "(shared with hams_self_attention)" in text


def test_summary_counts_own_parameters():
    class WithOwn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.layer = torch.nn.Linear(2, 2)

    rows = summary(WithOwn())
    assert [(row.name, row.parameters) for row in rows] == [("layer", 6), ("(own)", 3)]


@pytest.mark.slow
def test_paper_config_forward_16x640():
    torch.manual_seed(7)
    model = DMF2Mel(DMF2MelConfig.paper()).eval()
    eeg = torch.randn(16, 640, 64)
    subject = torch.randint(-1, 85, (16,))
    start = time.perf_counter()
    with torch.no_grad():
        mel = model(eeg, subject)
    print(f"paper config forward (16, 640, 64): {time.perf_counter() - start:.1f} s")
    assert mel.shape == (16, 640, 10)
    assert torch.isfinite(mel).all()


def test_activation_checkpointing_same_outputs_and_gradients_in_training():
    torch.manual_seed(9)
    # dropout everywhere and unshared blocks, so that every checkpointed call draws its own random masks
    config = tiny(dropout=0.3, attn_dropout=0.2, share_hams=False, share_fusion_self_attention=False)
    plain = DMF2Mel(DMF2MelConfig.from_dict({**config.to_dict(), "checkpoint_activations": False})).train()
    checkpointed = DMF2Mel(DMF2MelConfig.from_dict({**config.to_dict(), "checkpoint_activations": True})).train()
    checkpointed.load_state_dict(plain.state_dict())
    with torch.no_grad():  # open HAMS-Net's zero-initialised gates so that its attention paths carry gradient
        for model in (plain, checkpointed):
            for p in model.parameters():
                if not p.any():
                    p.fill_(0.1)
    eeg, mel, subject = torch.randn(2, 40, 64), torch.randn(2, 40, 10), torch.tensor([1, -1])
    results = []
    for model in (plain, checkpointed):
        torch.manual_seed(10)  # same subject dropout and dropout masks; the recomputation must reproduce them
        source = eeg.clone().requires_grad_()
        out = model(source, subject)
        (out - mel).square().mean().backward()
        results.append((out, source.grad, {name: p.grad for name, p in model.named_parameters()}))
    (out_a, grad_a, params_a), (out_b, grad_b, params_b) = results
    assert not torch.allclose(out_a, plain.eval()(eeg, subject))  # dropout was active
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=0)
    torch.testing.assert_close(grad_b, grad_a)
    for name, grad in params_a.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(params_b[name], grad, msg=name)
    for name, buffer in plain.named_buffers():  # BatchNorm statistics: updated once per call in both
        torch.testing.assert_close(dict(checkpointed.named_buffers())[name], buffer, rtol=0, atol=0, msg=name)

    plain.train(), checkpointed.train()
    saved_plain = saved_tensor_bytes(lambda: plain(eeg, subject))
    saved_checkpointed = saved_tensor_bytes(lambda: checkpointed(eeg, subject))
    # at least the hidden activations of the stem and convMamba feed-forwards (two per call) are not kept
    batch, time = eeg.shape[:2]
    hidden = 2 * batch * time * 4 * (config.d_inner + 2 * config.n_convmamba_repeats * config.d_ff_mamba)
    assert saved_checkpointed + hidden < saved_plain, (saved_checkpointed, saved_plain, hidden)


def _time_by_time_tensors(model, eeg, subject):
    """Saved-for-backward tensors whose last two dimensions are (time, time): attention weights."""
    found = []

    def pack(tensor):
        if tensor.dim() >= 2 and tensor.shape[-2:] == (eeg.shape[1], eeg.shape[1]):
            found.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(eeg, subject)
    return found


def test_no_attention_weights_are_kept_for_the_backward_pass():
    """The numba row kernels keep none; on torch ops, checkpointing recomputes them instead of keeping them."""
    from dmf2mel.models import kernels

    torch.manual_seed(12)
    config = tiny(attn_dropout=0.2, hams_n_bottleneck_adaf=1)
    plain = DMF2Mel(DMF2MelConfig.from_dict({**config.to_dict(), "checkpoint_activations": False})).train()
    checkpointed = DMF2Mel(DMF2MelConfig.from_dict({**config.to_dict(), "checkpoint_activations": True})).train()
    eeg, subject = torch.randn(2, 24, 64), torch.tensor([0, 1])
    assert _time_by_time_tensors(plain, eeg, subject) == []
    kernels.set_backend("torch")
    try:
        assert _time_by_time_tensors(plain, eeg, subject)  # softmax outputs and dropped weights
        assert _time_by_time_tensors(checkpointed, eeg, subject) == []
    finally:
        kernels.set_backend("numba")


def test_checkpoint_activations_field():
    assert DMF2MelConfig.paper().checkpoint_activations and not DMF2MelConfig.small().checkpoint_activations
    config = DMF2MelConfig.small(checkpoint_activations=True)
    assert DMF2MelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # checkpoints written before the field existed load with the field's default
    old = {name: value for name, value in config.to_dict().items() if name != "checkpoint_activations"}
    assert DMF2MelConfig.from_dict(old).checkpoint_activations
    with pytest.raises(UserError, match="checkpoint_activations must be True or False, got 'yes'"):
        DMF2MelConfig(checkpoint_activations="yes")
    model = DMF2Mel(tiny(checkpoint_activations=True))
    assert all(block.checkpoint_feed_forward for block in model.convmamba)
    assert not any(block.checkpoint_feed_forward for block in DMF2Mel(tiny(checkpoint_activations=False)).convmamba)


class _StopAtFusion(Exception):
    pass


def branch_stream_stds(model, eeg):
    """Std of the stream entering every HAMS-Net and DC-FAM repeat (forward stopped before the fusion)."""
    stds = {"hams": [], "dcfam": []}
    handles = [
        block.register_forward_pre_hook(lambda module, args, name=name: stds[name].append(args[0].std().item()))
        for name in stds
        for block in dict.fromkeys(getattr(model, name))
    ]

    def stop(module, args):
        raise _StopAtFusion

    handles.append(model.hams_self_attention.register_forward_pre_hook(stop))
    try:
        with torch.no_grad(), pytest.raises(_StopAtFusion):
            model(eeg, torch.zeros(eeg.shape[0], dtype=torch.long))
    finally:
        for handle in handles:
            handle.remove()
    return stds


@pytest.mark.parametrize("preset", ["paper", "small"])
def test_branch_streams_stay_bounded_over_the_repeats(preset):
    """At initialisation the stream entering each repeated block grows by at most x1.5 per repeat.

    (With a residual inside HAMS-Net and another around it, every repeat doubled the stream: std 1.8 -> 63 over the
    paper's six repeats; the official code, with its input added three times per repeat, grows about tenfold.)
    """
    torch.manual_seed(9)
    config = getattr(DMF2MelConfig, preset)(n_subjects=N_SUBJECTS, n_hams_repeats=6, n_dcfam_repeats=4)
    stds = branch_stream_stds(DMF2Mel(config).eval(), torch.randn(2, 640, 64))
    for name, values in stds.items():
        assert len(values) == getattr(config, f"n_{name}_repeats")
        ratios = [after / before for before, after in zip(values, values[1:])]
        assert max(ratios) <= 1.5, (name, values)


def test_stem_is_the_official_sum():
    """``h = x + s + y + FFN(y)``, ``y = LN(attention(x + position, x + s))``, ``s`` the normed subject code, one LN."""
    torch.manual_seed(11)
    model = DMF2Mel(tiny()).eval()
    assert model.stem_norm is model.subject_norm
    eeg = torch.randn(2, 30, 64)
    with torch.no_grad():
        x = model.input_proj(eeg)
        s = model.subject_norm(model.subject_embedding(torch.tensor([1, N_SUBJECTS])))[:, None]
        position = sinusoidal_position_encoding(30, x.shape[-1])
        y = model.subject_norm(model.stem_attention(x + position, x + s))
        expected = x + s + y + model.stem_ffn(y)
        # -1 (unknown) is mapped to the last row, N_SUBJECTS, before the stem
        torch.testing.assert_close(model._stem(eeg, model._subject_ids(eeg, torch.tensor([1, -1]))), expected)
        # the subject code is in the residual stream, not only in the keys and values
        assert (model._stem(eeg, torch.tensor([1, 1])) - model._stem(eeg, torch.tensor([2, 2]))).abs().max() > 0


def test_first_cross_attention_reuses_the_self_attention_layer():
    """The official fusion has six attention layers: its first cross-attention is the self-attention layer again."""
    official = DMF2Mel(tiny(n_cross_layers=6))
    assert official.cross_attention[0] is official.hams_self_attention is official.dcfam_self_attention
    assert len({id(layer) for layer in official.cross_attention}) == 6
    own = DMF2Mel(tiny(n_cross_layers=6, share_first_cross_attention=False))
    assert own.cross_attention[0] is not own.hams_self_attention
    assert n_parameters(own) - n_parameters(official) == n_parameters(official.hams_self_attention)


def test_convmamba_residual_on_every_pass_but_the_last():
    """The official ``y = m(x) + x; out = m(y)``: the last pass feeds the head without a residual."""
    torch.manual_seed(12)
    model = DMF2Mel(tiny(n_convmamba_repeats=2, convmamba_last_residual=False)).eval()
    calls = []
    model.convmamba[0].register_forward_hook(lambda module, args, output: calls.append((args[0], output)))
    head_inputs = []
    model.head.register_forward_pre_hook(lambda module, args: head_inputs.append(args[0]))
    with torch.no_grad():
        model(torch.randn(2, 24, 64), torch.tensor([0, 1]))
    (first_in, first_out), (second_in, second_out) = calls
    torch.testing.assert_close(second_in, first_out + first_in)
    torch.testing.assert_close(head_inputs[0], second_out)


def test_convmamba_last_residual_adds_the_input_of_the_last_pass_too():
    """The small config's single pass with a residual around it: the head sees ``m(x) + x``."""
    torch.manual_seed(12)
    model = DMF2Mel(tiny(n_convmamba_repeats=1, convmamba_last_residual=True)).eval()
    calls, head_inputs = [], []
    model.convmamba[0].register_forward_hook(lambda module, args, output: calls.append((args[0], output)))
    model.head.register_forward_pre_hook(lambda module, args: head_inputs.append(args[0]))
    with torch.no_grad():
        model(torch.randn(2, 24, 64), torch.tensor([0, 1]))
    ((block_in, block_out),) = calls
    torch.testing.assert_close(head_inputs[0], block_out + block_in)


def test_the_small_config_keeps_a_residual_around_its_single_pass_and_the_paper_config_follows_the_official_rule():
    small, paper = DMF2MelConfig.small(), DMF2MelConfig.paper()
    assert (small.n_convmamba_repeats, small.convmamba_last_residual) == (1, True)
    assert (paper.n_convmamba_repeats, paper.convmamba_last_residual) == (2, False)
    assert small.convmamba_output_dropout and paper.convmamba_output_dropout


def test_official_comparison_explains_the_total_difference():
    from dmf2mel.models.summary import OFFICIAL_DMF2MEL_PARAMETERS, official_comparison

    model = DMF2Mel(DMF2MelConfig.paper())
    rows = {row["module"]: row for row in official_comparison(model)}
    assert OFFICIAL_DMF2MEL_PARAMETERS == 5_882_522  # "5.88 M"
    assert sum(row["this book"] for row in rows.values()) == n_parameters(model)
    assert sum(row["difference"] for row in rows.values()) == n_parameters(model) - OFFICIAL_DMF2MEL_PARAMETERS
    # everything but HAMS-Net's output projection, DC-FAM's axes and the 10-band head is the official size
    for module in ("subject conditioning", "stem LayerNorm", "stem attention", "stem feed-forward",
                   "fusion attention", "convMamba"):  # fmt: skip
        assert rows[module]["difference"] == 0, module
    assert rows["HAMS-Net"]["difference"] == 4_160 - 816 - 20 + 2 * 2 * 4  # QK-norm: 2 LayerNorms over 4 channels
    assert rows["head"]["difference"] == 650 - 65
    assert all(row["why"] for row in rows.values() if row["difference"])
