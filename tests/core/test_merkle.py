"""The Merkle log against independent oracles: the published RFC 6962 test vectors, and a
brute-force transcription of RFC 6962 section 2.1 (MTH, PATH, PROOF) over many sizes."""

import random
from functools import lru_cache
from hashlib import sha256

import pytest

from fairwatch.core.merkle import (
    EMPTY_ROOT, append_leaves, check_record, check_tree, leaf_hash, node_hash, prove_record, prove_tree, root,
    roots_at, split_stored_hash_index, stored_hash_count, stored_hash_index, stored_hashes, tree_hash,
)

# The RFC 6962 test vectors as transparency-dev/merkle publishes them (testonly/constants.go:
# LeafInputs, RootHashes; proof/verify_test.go: inclusionProofs, consistencyProofs), themselves
# from google/certificate-transparency's merkle tests. Inclusion vectors there number leaves from 1.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # by tree size, 0..8
INCLUSION = [  # (leaf number from 1, tree size, audit path)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


class Store:
    """Stored hashes in a list, as a table keyed by index holds them; counts the reads."""

    def __init__(self):
        self.hashes: list[bytes] = []
        self.size = 0
        self.reads = 0

    def read(self, indexes):
        self.reads += 1
        return [self.hashes[i] for i in indexes]

    def append(self, leaf_hashes):
        pairs = append_leaves(self.size, leaf_hashes, self.read)
        assert [index for index, _ in pairs] == list(range(len(self.hashes), len(self.hashes) + len(pairs)))
        self.hashes += [h for _, h in pairs]
        self.size += len(leaf_hashes)
        return self


def brute_oracle(leaves: list[bytes]):
    """RFC 6962 section 2.1, transcribed: MTH, PATH and PROOF over the leaf inputs."""
    hashes = [leaf_hash(x) for x in leaves]

    @lru_cache(maxsize=None)
    def mth(lo, hi):
        if hi - lo == 0:
            return sha256(b"").digest()
        if hi - lo == 1:
            return hashes[lo]
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        return sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()

    def path(m, lo, hi):
        if hi - lo <= 1:
            return []
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        if m < k:
            return path(m, lo, lo + k) + [mth(lo + k, hi)]
        return path(m - k, lo + k, hi) + [mth(lo, lo + k)]

    def subproof(m, lo, hi, whole):
        if m == hi - lo:
            return [] if whole else [mth(lo, hi)]
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        if m <= k:
            return subproof(m, lo, lo + k, whole) + [mth(lo + k, hi)]
        return subproof(m - k, lo + k, hi, False) + [mth(lo, lo + k)]

    return (lambda n: mth(0, n)), (lambda m, n: path(m, 0, n)), (lambda m, n: subproof(m, 0, n, True))


def vector_store(size):
    return Store().append([leaf_hash(x) for x in LEAVES[:size]])


def test_the_published_roots():
    hashes = [leaf_hash(x) for x in LEAVES]
    assert EMPTY_ROOT == ROOTS[0] and root([]) == ROOTS[0] and tree_hash(0, None) == ROOTS[0]
    assert roots_at(hashes, range(9)) == ROOTS
    for size in range(9):
        assert root(hashes[:size]) == ROOTS[size]
        assert tree_hash(size, vector_store(8).read) == ROOTS[size]


@pytest.mark.parametrize("number, size, path", INCLUSION)
def test_the_published_inclusion_proofs(number, size, path):
    path = [bytes.fromhex(h) for h in path]
    store = vector_store(size)
    assert prove_record(size, number - 1, store.read) == path
    assert check_record(path, size, ROOTS[size], number - 1, leaf_hash(LEAVES[number - 1]))


@pytest.mark.parametrize("old, new, proof", CONSISTENCY)
def test_the_published_consistency_proofs(old, new, proof):
    proof = [bytes.fromhex(h) for h in proof]
    assert prove_tree(new, old, vector_store(new).read) == proof
    assert check_tree(proof, new, ROOTS[new], old, ROOTS[old])


def test_stored_hash_indexes_are_tlogs_dense_order():
    # tlog's layout: record n's leaf hash, then the subtrees it completes; levels interleave.
    assert [stored_hash_index(0, n) for n in range(6)] == [0, 1, 3, 4, 7, 8]
    assert [stored_hash_index(1, n) for n in range(3)] == [2, 5, 9]
    assert stored_hash_index(2, 0) == 6 and stored_hash_index(3, 0) == 14
    seen = set()
    for level in range(12):
        for n in range(200):
            index = stored_hash_index(level, n)
            assert split_stored_hash_index(index) == (level, n)
            seen.add(index)
    assert set(range(stored_hash_count(200))) <= seen  # dense: no index left unused


def test_appending_in_batches_stores_what_appending_one_by_one_does():
    rng = random.Random(7)
    leaves = [leaf_hash(rng.randbytes(rng.randrange(40))) for _ in range(300)]
    one_by_one = []
    for n, h in enumerate(leaves):
        one_by_one += stored_hashes(n, h, lambda indexes: [one_by_one[i] for i in indexes])
        assert len(one_by_one) == stored_hash_count(n + 1)
    store, at = Store(), 0
    while at < len(leaves):
        step = rng.choice([0, 1, 2, 3, 7, 64])
        reads = store.reads
        store.append(leaves[at : at + step])
        assert store.reads - reads <= 1  # one read per batch, whatever its size
        at += step
    assert store.hashes == one_by_one


def test_roots_agree_with_the_rfc_definition_over_random_sizes():
    rng = random.Random(1)
    leaves = [rng.randbytes(rng.randrange(12)) for _ in range(300)]
    mth, _, _ = brute_oracle(leaves)
    hashes = [leaf_hash(x) for x in leaves]
    store = Store().append(hashes)
    sizes = [0, 1, 2, 3, 255, 256, 257, 300] + [rng.randrange(301) for _ in range(40)]
    expected = [mth(size) for size in sizes]
    assert roots_at(hashes, sizes) == expected
    assert [root(hashes[:size]) for size in sizes] == expected
    for size, want in zip(sizes, expected):
        reads = store.reads
        assert tree_hash(size, store.read) == want
        assert store.reads - reads == (1 if size else 0)


def corruptions(proof):
    """The proof with each hash's bytes flipped in turn (one random byte each), cut, lengthened."""
    rng = random.Random(len(proof))
    for i in range(len(proof)):
        for at in (0, 31, rng.randrange(32)):
            bad = list(proof)
            bad[i] = bad[i][:at] + bytes([bad[i][at] ^ 0x40]) + bad[i][at + 1 :]
            yield bad
    if proof:
        yield proof[:-1]
        yield proof[1:]
    yield proof + [EMPTY_ROOT]
    yield [EMPTY_ROOT] + proof


def flipped(h):
    return bytes([h[0] ^ 1]) + h[1:]


def test_every_inclusion_proof_up_to_70_checks_and_any_change_fails():
    leaves = [b"record %d" % i for i in range(70)]
    _, path, _ = brute_oracle(leaves)
    hashes = [leaf_hash(x) for x in leaves]
    store = Store().append(hashes)
    roots = roots_at(hashes, range(71))
    for t in range(1, 71):
        for n in range(t):
            proof = prove_record(t, n, store.read)
            assert proof == path(n, t)
            assert check_record(proof, t, roots[t], n, hashes[n])
            assert not check_record(proof, t, flipped(roots[t]), n, hashes[n])
            assert not check_record(proof, t, roots[t], n, flipped(hashes[n]))
            for other in {n - 1, n + 1, n ^ 2} - {n}:
                assert not check_record(proof, t, roots[t], other, hashes[n])
            for size in {2 * t, t // 2} - {t}:  # the (size, root) pair is what a checkpoint signs
                assert not check_record(proof, size, roots[t], n, hashes[n])
            for size in {t - 1, t + 1} & set(range(n + 1, 71)):
                assert not check_record(proof, size, roots[size], n, hashes[n])
            for bad in corruptions(proof):
                assert not check_record(bad, t, roots[t], n, hashes[n])


def test_every_consistency_proof_up_to_70_checks_and_any_change_fails():
    leaves = [b"record %d" % i for i in range(70)]
    _, _, proof_of = brute_oracle(leaves)
    store = Store().append([leaf_hash(x) for x in leaves])
    roots = roots_at([leaf_hash(x) for x in leaves], range(71))
    for t in range(1, 71):
        for n in range(1, t + 1):
            proof = prove_tree(t, n, store.read)
            assert proof == proof_of(n, t)
            assert check_tree(proof, t, roots[t], n, roots[n])
            if n == t:
                assert not check_tree([roots[t]], t, roots[t], n, roots[n])
                continue
            assert not check_tree(proof, t, flipped(roots[t]), n, roots[n])
            assert not check_tree(proof, t, roots[t], n, flipped(roots[n]))
            assert not check_tree(proof, t, roots[n], n, roots[t])
            for size in {n - 1, n + 1, n ^ 2} - {n}:
                assert not check_tree(proof, t, roots[t], size, roots[n])
            for size in {2 * t, t // 2} - {t}:
                assert not check_tree(proof, size, roots[t], n, roots[n])
            for size in {t - 1, t + 1} & set(range(n + 1, 71)):
                assert not check_tree(proof, size, roots[size], n, roots[n])
            for bad in corruptions(proof):
                assert not check_tree(bad, t, roots[t], n, roots[n])


@pytest.mark.parametrize("args", [
    (None, 1, ROOTS[1], 0, ROOTS[1]),
    ("", 1, ROOTS[1], 0, ROOTS[1]),
    ([b"short"], 2, ROOTS[2], 0, ROOTS[1]),
    (["x" * 32], 2, ROOTS[2], 0, ROOTS[1]),
    ([], 1, ROOTS[1][:31], 0, ROOTS[1]),
    ([], 1, ROOTS[1], 0, None),
    ([], 0, ROOTS[0], 0, ROOTS[0]),
    ([], -1, ROOTS[1], -1, ROOTS[1]),
    ([], 1, ROOTS[1], True, ROOTS[1]),
    ([], "1", ROOTS[1], 0, ROOTS[1]),
    ([ROOTS[1]] * 70, 1 << 70, ROOTS[1], 5, ROOTS[1]),
])
def test_checks_are_false_on_malformed_input_and_never_raise(args):
    assert check_record(*args) is False
    assert check_tree(*args) is False


def test_refusals():
    store = vector_store(8)
    with pytest.raises(ValueError, match="no record 8"):
        prove_record(8, 8, store.read)
    with pytest.raises(ValueError, match="1 <= n <= t"):
        prove_tree(8, 0, store.read)
    with pytest.raises(ValueError, match="did not return"):
        tree_hash(5, lambda indexes: [])
    with pytest.raises(ValueError, match="32 bytes"):
        append_leaves(0, [b"short"], store.read)
    with pytest.raises(ValueError, match="between 0 and the 8 leaves"):
        roots_at([leaf_hash(x) for x in LEAVES], [9])
    assert node_hash(leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])) == ROOTS[2]
