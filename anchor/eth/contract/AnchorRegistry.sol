// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title AnchorRegistry
/// @notice Append-only chain of fhiranchor's Merkle log checkpoints. Anchor
/// `seq` records the RFC 6962 root of the log's first `treeSize` leaves and
/// names the root of anchor `seq - 1`, so the recorded roots can only extend
/// the log, never rewrite it. The chain sees roots, tree sizes and counters
/// only; never personal data.
/// @dev Storage is laid out for gas: anchor() writes one new slot (the root)
/// and rewrites one packed slot (`head`), 55.3k gas under Osaka rules when the
/// owner anchors and 57.4k for another anchorer. The tree size and timestamp
/// of every anchor are in its Anchored event, which the block's receipts
/// commit to; storage keeps them for the latest anchor only, which is all the
/// contract's own checks need.
contract AnchorRegistry {
    /// @dev The latest anchor, packed into one slot so that anchor() reads and
    /// rewrites a single word.
    struct Head {
        uint64 seq;
        uint64 treeSize;
        uint64 timestamp;
    }

    /// @notice The deployer; it alone adds and removes anchorers, and it can
    /// always anchor.
    address public immutable owner;

    mapping(address account => bool allowed) private anchorers;

    Head private head;

    mapping(uint64 seq => bytes32 root) private roots;

    /// @notice Emitted for every anchor; `timestamp` is the block's.
    event Anchored(uint64 indexed seq, bytes32 root, uint64 treeSize, bytes32 prevRoot, uint64 timestamp);
    event AnchorerAdded(address indexed account);
    event AnchorerRemoved(address indexed account);

    error NotOwner(address caller);
    error NotAnchorer(address caller);
    error SeqMismatch(uint64 expected, uint64 got);
    error PrevRootMismatch(bytes32 expected, bytes32 got);
    error TreeSizeNotIncreasing(uint64 last, uint64 got);
    error ZeroRoot();
    error ZeroAddress();

    constructor() {
        owner = msg.sender;
        emit AnchorerAdded(msg.sender);
        // A non-zero head makes the first anchor() rewrite the slot rather than
        // create it, so it costs what every later one does.
        head.timestamp = uint64(block.timestamp);
    }

    /// @notice Records `root` as anchor `seq`, the root of the log's first
    /// `treeSize` leaves. Reverts unless the caller is an anchorer, `seq` is the
    /// latest sequence number plus one, `prevRoot` is the latest root (zero
    /// before the first anchor), `treeSize` exceeds the latest tree size, and
    /// `root` is not zero. Sending the same anchor twice therefore records it
    /// once.
    function anchor(uint64 seq, bytes32 root, uint64 treeSize, bytes32 prevRoot) external {
        // The owner, the usual anchorer, skips the mapping's cold read (2,100 gas).
        if (msg.sender != owner && !anchorers[msg.sender]) revert NotAnchorer(msg.sender);
        Head memory h = head;
        if (seq != h.seq + 1) revert SeqMismatch(h.seq + 1, seq);
        bytes32 last = roots[h.seq];
        if (prevRoot != last) revert PrevRootMismatch(last, prevRoot);
        if (treeSize <= h.treeSize) revert TreeSizeNotIncreasing(h.treeSize, treeSize);
        if (root == bytes32(0)) revert ZeroRoot();
        uint64 ts = uint64(block.timestamp);
        roots[seq] = root;
        head = Head(seq, treeSize, ts);
        emit Anchored(seq, root, treeSize, prevRoot, ts);
    }

    /// @notice The latest anchor: its sequence number (0 before the first),
    /// root, tree size and block timestamp (the deployment's before the first).
    function latest() external view returns (uint64 seq, bytes32 root, uint64 treeSize, uint64 timestamp) {
        Head memory h = head;
        return (h.seq, roots[h.seq], h.treeSize, h.timestamp);
    }

    /// @notice The root recorded as anchor `seq` and the root before it; both
    /// zero when there is no anchor `seq`.
    function anchorAt(uint64 seq) external view returns (bytes32 root, bytes32 prevRoot) {
        if (seq == 0 || seq > head.seq) return (bytes32(0), bytes32(0));
        return (roots[seq], roots[seq - 1]);
    }

    /// @notice Lets `account` call anchor().
    function addAnchorer(address account) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (account == address(0)) revert ZeroAddress();
        anchorers[account] = true;
        emit AnchorerAdded(account);
    }

    /// @notice Stops `account` from calling anchor(); the owner stays able to.
    function removeAnchorer(address account) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        anchorers[account] = false;
        emit AnchorerRemoved(account);
    }

    /// @notice Whether `account` may call anchor().
    function isAnchorer(address account) external view returns (bool) {
        return account == owner || anchorers[account];
    }
}
