"""Property tests of the pure certificate checks (consensus/pbft/certs.py).

Each check is a function of (message, group, authentic): a certificate built from validly
signed messages is valid exactly when their weight is a quorum; a forged signature, a
message for another view/seq/digest, a duplicate sender or a non-member makes it invalid.
compute_new_view is deterministic and picks, per seq, the highest-view prepared value.
"""
from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from consensus.pbft import (
    NULL_DIGEST, NULL_VALUE, Auth, Checkpoint, Commit, CommitProof, Group, NewView,
    NewViewCheck, PreparedCert, PrePrepare, Prepare, ViewChange, check_new_view,
    compute_new_view, digest_of, signing_bytes, valid_checkpoint_proof, valid_commit_proof,
    valid_prepared_cert, valid_view_change, with_signature,
)
from consensus.testing import KeyedHashAuthStandIn

AUTH = KeyedHashAuthStandIn("test_pbft_certs")
authentic = Auth(None, AUTH.verify).authentic
INTERVAL, WINDOW = 4, 8
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def signed(msg):
    return with_signature(msg, AUTH.sign_for(msg.sender)(signing_bytes(msg)))


def forged(msg):
    """``msg`` signed with another member's key (what a liar can produce)."""
    return with_signature(msg, AUTH.sign_for(msg.sender + "-not")(signing_bytes(msg)))


@st.composite
def groups(draw, n_min=1, n_max=7):
    n = draw(st.integers(n_min, n_max))
    ws = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n).filter(lambda w: sum(w) > 0))
    return Group({f"m{i}": w for i, w in enumerate(ws)}, checkpoint_interval=INTERVAL,
                 watermark_window=WINDOW)


@st.composite
def certs_in(draw, group, *, view=None, seq=None, stable_seq=0, value=None, quorum=None):
    """A prepared certificate signed by its members; ``quorum`` True/False forces whether
    the signers (primary included) weigh a quorum, None leaves it to chance."""
    v = draw(st.integers(0, 5)) if view is None else view
    n = draw(st.integers(stable_seq + 1, stable_seq + WINDOW)) if seq is None else seq
    x = draw(st.binary(max_size=8)) if value is None else value
    primary = group.primary(v)
    pp = signed(PrePrepare(v, n, digest_of(x), x, primary))
    others = [m for m in group.members if m != primary]
    subset = draw(st.lists(st.sampled_from(others), unique=True)) if others else []
    weight = group.weights[primary] + sum(group.weights[m] for m in subset)
    if quorum is not None:
        assume(group.is_quorum(weight) == quorum)
    prepares = tuple(signed(Prepare(v, n, pp.digest, m)) for m in sorted(subset))
    return PreparedCert(pp, prepares)


def check_cert(cert, group, view_below=10, stable_seq=0):
    return valid_prepared_cert(cert, group, authentic, view_below=view_below,
                               stable_seq=stable_seq)


# ---------------------------------------------------------------- prepared certificates


@SETTINGS
@given(st.data(), groups())
def test_a_signed_certificate_is_valid_exactly_when_its_weight_is_a_quorum(data, group):
    cert = data.draw(certs_in(group))
    w = group.weight_of([cert.pre_prepare.sender] + [p.sender for p in cert.prepares])
    assert check_cert(cert, group) == group.is_quorum(w)


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_removing_a_prepare_below_quorum_invalidates_the_certificate(data, group):
    cert = data.draw(certs_in(group, quorum=True))
    assert check_cert(cert, group)
    kept = list(cert.prepares)
    while kept and group.is_quorum(group.weight_of(
            [cert.pre_prepare.sender] + [p.sender for p in kept])):
        kept.pop(data.draw(st.integers(0, len(kept) - 1)))
    w = group.weight_of([cert.pre_prepare.sender] + [p.sender for p in kept])
    assume(not group.is_quorum(w))
    assert not check_cert(PreparedCert(cert.pre_prepare, tuple(kept)), group)


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_one_forged_signature_invalidates_a_valid_certificate(data, group):
    cert = data.draw(certs_in(group, quorum=True))
    assert check_cert(cert, group)
    assert not check_cert(PreparedCert(forged(cert.pre_prepare), cert.prepares), group)
    if cert.prepares:
        i = data.draw(st.integers(0, len(cert.prepares) - 1))
        preps = list(cert.prepares)
        preps[i] = forged(preps[i])
        assert not check_cert(PreparedCert(cert.pre_prepare, tuple(preps)), group)


@SETTINGS
@given(st.data(), groups(n_min=2), st.sampled_from(["view", "seq", "digest"]))
def test_a_prepare_for_another_view_seq_or_digest_invalidates_it(data, group, field):
    cert = data.draw(certs_in(group, quorum=True))
    assume(cert.prepares)
    i = data.draw(st.integers(0, len(cert.prepares) - 1))
    p = cert.prepares[i]
    other = {"view": Prepare(p.view + 1, p.seq, p.digest, p.sender),
             "seq": Prepare(p.view, p.seq + 1, p.digest, p.sender),
             "digest": Prepare(p.view, p.seq, digest_of(b"other" + p.digest), p.sender)}[field]
    preps = list(cert.prepares)
    preps[i] = signed(other)  # correctly signed by its sender: only the mismatch is wrong
    assert not check_cert(PreparedCert(cert.pre_prepare, tuple(preps)), group)


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_duplicate_senders_and_non_members_invalidate_it(data, group):
    cert = data.draw(certs_in(group, quorum=True))
    pp = cert.pre_prepare
    own = signed(Prepare(pp.view, pp.seq, pp.digest, pp.sender))  # the primary counted twice
    assert not check_cert(PreparedCert(pp, cert.prepares + (own,)), group)
    if cert.prepares:
        dup = cert.prepares[data.draw(st.integers(0, len(cert.prepares) - 1))]
        assert not check_cert(PreparedCert(pp, cert.prepares + (dup,)), group)
    stranger = signed(Prepare(pp.view, pp.seq, pp.digest, "not-a-member"))
    assert not check_cert(PreparedCert(pp, cert.prepares + (stranger,)), group)


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_a_pre_prepare_from_a_non_primary_or_with_a_wrong_value_is_invalid(data, group):
    cert = data.draw(certs_in(group, quorum=True))
    pp = cert.pre_prepare
    others = [m for m in group.members if m != pp.sender]
    liar = signed(PrePrepare(pp.view, pp.seq, pp.digest, pp.value, data.draw(st.sampled_from(others))))
    assert not check_cert(PreparedCert(liar, cert.prepares), group)
    swapped = signed(PrePrepare(pp.view, pp.seq, pp.digest, pp.value + b"!", pp.sender))
    assert not check_cert(PreparedCert(swapped, cert.prepares), group)
    # outside the view or the window the view change speaks for
    assert not check_cert(cert, group, view_below=pp.view)
    assert not check_cert(cert, group, stable_seq=pp.seq)
    assert not check_cert(cert, group, stable_seq=pp.seq - WINDOW - 1)


# ---------------------------------------------------------------- checkpoint and commit proofs


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_checkpoint_proofs(data, group):
    seq = INTERVAL * data.draw(st.integers(1, 5))
    sd = digest_of(b"state")
    signers = data.draw(st.lists(st.sampled_from(group.members), min_size=1, unique=True))
    proof = tuple(signed(Checkpoint(seq, sd, m)) for m in signers)
    ok = group.is_quorum(group.weight_of(signers))
    assert valid_checkpoint_proof(seq, proof, group, authentic) == ok
    assert valid_checkpoint_proof(0, (), group, authentic)
    assert not valid_checkpoint_proof(0, proof, group, authentic)
    assert not valid_checkpoint_proof(seq + 1, proof, group, authentic)
    assert not valid_checkpoint_proof(seq, proof + proof[:1], group, authentic)
    assert not valid_checkpoint_proof(seq, (forged(proof[0]),) + proof[1:], group, authentic)
    mixed = proof + tuple(signed(Checkpoint(seq, digest_of(b"fork"), m))
                          for m in group.members if m not in signers)
    if len(mixed) > len(proof):
        assert not valid_checkpoint_proof(seq, mixed, group, authentic)


@SETTINGS
@given(st.data(), groups(n_min=2), st.binary(max_size=8))
def test_commit_proofs(data, group, value):
    d = digest_of(value)
    signers = data.draw(st.lists(st.sampled_from(group.members), min_size=1, unique=True))
    commits = tuple(signed(Commit(2, 7, d, m)) for m in sorted(signers))
    cp = CommitProof(7, 2, d, value, commits, signers[0])
    ok = group.is_quorum(group.weight_of(signers))
    assert valid_commit_proof(cp, group, authentic) == ok
    assume(ok)
    bad_value = CommitProof(7, 2, d, value + b"x", commits, signers[0])
    dup = CommitProof(7, 2, d, value, commits + commits[:1], signers[0])
    forged_one = CommitProof(7, 2, d, value, (forged(commits[0]),) + commits[1:], signers[0])
    other_view = CommitProof(7, 2, d, value, commits[:-1] + (signed(Commit(3, 7, d, commits[-1].sender)),),
                             signers[0])
    other_digest = CommitProof(7, 2, d, value, commits[:-1] + (
        signed(Commit(2, 7, digest_of(value + b"x"), commits[-1].sender)),), signers[0])
    other_seq = CommitProof(7, 2, d, value, commits[:-1] + (
        signed(Commit(2, 8, d, commits[-1].sender)),), signers[0])
    for bad in (bad_value, dup, forged_one, other_view, other_digest, other_seq):
        assert not valid_commit_proof(bad, group, authentic)


# ---------------------------------------------------------------- view changes and new views


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_view_changes_carry_valid_certificates_at_distinct_seqs(data, group):
    new_view = 3
    seqs = data.draw(st.lists(st.integers(1, WINDOW), unique=True, max_size=3))
    certs = tuple(data.draw(certs_in(group, seq=n, view=data.draw(st.integers(0, new_view - 1)),
                                     quorum=True)) for n in seqs)
    sender = group.members[0]
    vc = ViewChange(new_view, 0, certs, sender)
    assert valid_view_change(vc, group, authentic)
    if certs:
        assert not valid_view_change(ViewChange(new_view, 0, certs + certs[:1], sender),
                                     group, authentic)
        # a certificate for the view being entered (or later) proves nothing about the past
        assert not valid_view_change(ViewChange(certs[0].pre_prepare.view, 0, certs, sender),
                                     group, authentic)
    assert not valid_view_change(ViewChange(new_view, 0, certs, sender, missing=(1,)),
                                 group, authentic)  # nothing below a stable seq of 0
    assert not valid_view_change(ViewChange(new_view, INTERVAL, (), sender), group, authentic)


@st.composite
def view_change_sets(draw):
    """View changes with arbitrary stable seqs and (structurally plausible) certificates."""
    vcs = []
    for i in range(draw(st.integers(1, 5))):
        stable = INTERVAL * draw(st.integers(0, 2))
        certs = []
        for n in draw(st.lists(st.integers(stable + 1, stable + WINDOW), unique=True,
                               max_size=4)):
            x = draw(st.sampled_from([b"a", b"b", b"c", b""]))
            v = draw(st.integers(0, 4))
            certs.append(PreparedCert(PrePrepare(v, n, digest_of(x), x, f"p{v}"), ()))
        vcs.append(ViewChange(5, stable, tuple(certs), f"m{i}"))
    return vcs


@settings(max_examples=150, deadline=None)
@given(view_change_sets(), st.randoms(use_true_random=False))
def test_compute_new_view_is_deterministic_and_keeps_the_highest_view_value(vcs, rnd):
    out = compute_new_view(5, vcs, "p5")
    shuffled = list(vcs)
    rnd.shuffle(shuffled)
    assert compute_new_view(5, shuffled, "p5") == out
    low = max(vc.stable_seq for vc in vcs)
    best: dict[int, PrePrepare] = {}
    for vc in vcs:
        for c in vc.prepared:
            pp = c.pre_prepare
            if pp.seq > low and (pp.seq not in best or (best[pp.seq].view, best[pp.seq].digest)
                                 < (pp.view, pp.digest)):
                best[pp.seq] = pp
    # one pre-prepare per seq from just above the highest stable checkpoint, no gaps
    assert [pp.seq for pp in out] == list(range(low + 1, max(best, default=low) + 1))
    for pp in out:
        assert (pp.view, pp.sender) == (5, "p5")
        if pp.seq in best:
            assert pp.digest == best[pp.seq].digest and pp.value == best[pp.seq].value
        else:
            assert (pp.digest, pp.value) == (NULL_DIGEST, NULL_VALUE)


def test_compute_new_view_prefers_the_higher_view_whatever_the_order():
    low = PreparedCert(PrePrepare(1, 3, digest_of(b"old"), b"old", "p1"), ())
    high = PreparedCert(PrePrepare(2, 3, digest_of(b"new"), b"new", "p2"), ())
    for order in ([low, high], [high, low]):
        vcs = [ViewChange(4, 0, (c,), f"m{i}") for i, c in enumerate(order)]
        out = compute_new_view(4, vcs, "p4")
        assert [pp.value for pp in out] == [b"", b"", b"new"]


@SETTINGS
@given(st.data(), groups(n_min=2))
def test_check_new_view(data, group):
    view = 2
    primary = group.primary(view)
    cert = data.draw(certs_in(group, view=0, seq=1, quorum=True))
    signers = data.draw(st.lists(st.sampled_from(group.members), min_size=1, unique=True))
    vcs = tuple(signed(ViewChange(view, 0, (cert,) if i == 0 else (), m))
                for i, m in enumerate(sorted(signers)))
    pps = tuple(signed(pp) for pp in compute_new_view(view, vcs, primary))
    nv = NewView(view, vcs, pps, primary)
    quorum = group.is_quorum(group.weight_of(signers))
    assert check_new_view(nv, group, authentic) is (
        NewViewCheck.VALID if quorum else NewViewCheck.INVALID)
    assume(quorum)
    # the primary re-proposes something else at a seq a quorum may have decided
    other = signed(PrePrepare(view, 1, digest_of(b"mine"), b"mine", primary))
    wrong = NewView(view, vcs, (other,) + pps[1:], primary)
    assert check_new_view(wrong, group, authentic) is NewViewCheck.WRONG_PRE_PREPARES
    assert check_new_view(NewView(view, vcs, pps[:-1], primary), group,
                          authentic) is NewViewCheck.WRONG_PRE_PREPARES
    forged_vc = NewView(view, (forged(vcs[0]),) + vcs[1:], pps, primary)
    assert check_new_view(forged_vc, group, authentic) is NewViewCheck.INVALID
    dup = NewView(view, vcs + vcs[:1], pps, primary)
    assert check_new_view(dup, group, authentic) is NewViewCheck.INVALID
    others = [m for m in group.members if m != primary]
    not_primary = NewView(view, vcs, pps, data.draw(st.sampled_from(others)))
    assert check_new_view(not_primary, group, authentic) is NewViewCheck.INVALID
    unsigned_pp = NewView(view, vcs, tuple(forged(pp) for pp in pps), primary)
    assert check_new_view(unsigned_pp, group, authentic) is NewViewCheck.INVALID
