-- hermet schema v1 (SQLite). Timestamps are Unix milliseconds (INTEGER); ids are
-- 64-bit snowflakes made by the application. Booleans are INTEGER 0/1, JSON is TEXT;
-- otherwise the same tables, constraints and indexes as the PostgreSQL schema.

-- ───────────────────────────── write side ─────────────────────────────

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT,
    mobile        TEXT,
    password_hash TEXT,
    nickname      TEXT NOT NULL CHECK (length(nickname) BETWEEN 1 AND 64),
    -- lower-cased nickname, compared byte-wise for prefix search (same rule as SQLite)
    search_name   TEXT NOT NULL,
    avatar        TEXT NOT NULL DEFAULT '' CHECK (length(avatar) <= 256),
    gender        TEXT NOT NULL DEFAULT 'unknown' CHECK (gender IN ('unknown', 'male', 'female')),
    region        TEXT NOT NULL DEFAULT '' CHECK (length(region) <= 64),
    birthday      TEXT,
    tagline       TEXT NOT NULL DEFAULT '' CHECK (length(tagline) <= 256),
    profile_ver   INTEGER NOT NULL DEFAULT 1,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'deleted')),
    deleted_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CONSTRAINT users_has_account CHECK (email IS NOT NULL OR mobile IS NOT NULL)
);
-- e-mail and mobile are unique among live (not deleted) users
CREATE UNIQUE INDEX users_email_live ON users (email) WHERE email IS NOT NULL AND status <> 'deleted';
CREATE UNIQUE INDEX users_mobile_live ON users (mobile) WHERE mobile IS NOT NULL AND status <> 'deleted';
CREATE INDEX users_search ON users (search_name, id) WHERE status = 'active';

-- a sign-in session: one refresh-token family; access tokens name their session
CREATE TABLE session (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    created_at    INTEGER NOT NULL,
    refreshed_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT,
    user_agent    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX session_user_live ON session (user_id) WHERE revoked_at IS NULL;

-- every refresh token ever issued (SHA-256 of the secret); a rotated one presented
-- again means the family leaked, and the session is revoked
CREATE TABLE refresh_token (
    token_hash TEXT PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE INDEX refresh_token_session ON refresh_token (session_id);

CREATE TABLE channel (
    id                       INTEGER PRIMARY KEY,
    channel_type             TEXT NOT NULL CHECK (channel_type IN ('single', 'group')),
    name                     TEXT NOT NULL DEFAULT '',
    avatar                   TEXT NOT NULL DEFAULT '',
    status                   TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('creating', 'active', 'failed', 'archived')),
    channel_info_ver         INTEGER NOT NULL DEFAULT 1,
    member_count             INTEGER NOT NULL DEFAULT 0,
    last_message_at          INTEGER,
    last_seq                 INTEGER NOT NULL DEFAULT 0,
    -- the channel's last-message snapshot (read diffusion for large groups)
    last_message_id          INTEGER,
    last_message_type        TEXT,
    last_message_content     TEXT,
    last_message_sender_id   INTEGER,
    last_message_sender_name TEXT,
    -- 'minUserId:maxUserId' for single channels, so a pair reuses its channel
    single_pair              TEXT,
    archived_at              INTEGER,
    creator_id               INTEGER NOT NULL,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
);
CREATE UNIQUE INDEX channel_single_pair ON channel (single_pair) WHERE single_pair IS NOT NULL;

CREATE TABLE channel_member (
    id             INTEGER PRIMARY KEY,
    channel_id     INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    role           TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    group_nickname TEXT NOT NULL DEFAULT '',
    joined_at      INTEGER NOT NULL,
    left_at        INTEGER,
    -- history visible to the member: seq in (join_seq, left_seq]
    join_seq       INTEGER NOT NULL DEFAULT 0,
    left_seq       INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    CONSTRAINT channel_member_channel_user UNIQUE (channel_id, user_id)
);
CREATE INDEX channel_member_user ON channel_member (user_id);

CREATE TABLE channel_read_record (
    user_id       INTEGER NOT NULL,
    channel_id    INTEGER NOT NULL,
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

-- a member's settings of a conversation: the write side of pinned/muted/hidden/closed.
-- Hiding or closing records the channel's seq at that moment; a later message shows the
-- conversation again without touching this row.
CREATE TABLE conversation_setting (
    user_id    INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    is_pinned  INTEGER NOT NULL DEFAULT 0,
    is_muted   INTEGER NOT NULL DEFAULT 0,
    is_hidden  INTEGER NOT NULL DEFAULT 0,
    hidden_seq INTEGER NOT NULL DEFAULT 0,
    closed_at  INTEGER,
    closed_seq INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

CREATE TABLE friendship (
    user_id     INTEGER NOT NULL,
    friend_id   INTEGER NOT NULL,
    remark_name TEXT NOT NULL DEFAULT '',
    -- lower-cased remark (same folding as users.search_name), for contact ordering
    remark_key  TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL CHECK (source IN ('search', 'qrcode', 'group')),
    tags        TEXT NOT NULL DEFAULT '[]',
    group_name  TEXT NOT NULL DEFAULT 'friends',
    is_starred  INTEGER NOT NULL DEFAULT 0,
    is_blocked  INTEGER NOT NULL DEFAULT 0,
    added_at    INTEGER NOT NULL,
    deleted_at  INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE contact_application (
    id           INTEGER PRIMARY KEY,
    applicant_id INTEGER NOT NULL,
    target_id    INTEGER NOT NULL,
    message      TEXT NOT NULL DEFAULT '',
    source       TEXT NOT NULL CHECK (source IN ('search', 'qrcode', 'group')),
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    reviewed_at  INTEGER
);
CREATE UNIQUE INDEX contact_application_pending ON contact_application (applicant_id, target_id) WHERE status = 'pending';
CREATE INDEX contact_application_target ON contact_application (target_id, status, updated_at DESC);
CREATE INDEX contact_application_applicant ON contact_application (applicant_id, status, updated_at DESC);

-- join requests to groups
CREATE TABLE channel_application (
    id           INTEGER PRIMARY KEY,
    channel_id   INTEGER NOT NULL,
    applicant_id INTEGER NOT NULL,
    message      TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    reviewer_id  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    reviewed_at  INTEGER
);
CREATE UNIQUE INDEX channel_application_pending ON channel_application (channel_id, applicant_id) WHERE status = 'pending';
CREATE INDEX channel_application_channel ON channel_application (channel_id, status, updated_at DESC);

CREATE TABLE message (
    id            INTEGER PRIMARY KEY,
    channel_id    INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL,
    -- the sender's display name and the list preview, as at send time
    sender_name   TEXT NOT NULL DEFAULT '',
    msg_type      TEXT NOT NULL CHECK (msg_type IN ('text', 'image', 'voice', 'video', 'file', 'custom', 'system')),
    content       TEXT NOT NULL,
    mentions      TEXT NOT NULL DEFAULT '[]',
    mention_all   INTEGER NOT NULL DEFAULT 0,
    preview       TEXT NOT NULL DEFAULT '',
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    CONSTRAINT message_channel_seq UNIQUE (channel_id, seq),
    CONSTRAINT message_sender_client_msg UNIQUE (sender_id, client_msg_id)
);
-- @all messages, counted per reader instead of writing a mention row per member
CREATE INDEX message_mention_all ON message (channel_id, seq) WHERE mention_all = 1;

-- mentions recorded per mentioned user (large groups count mentions from here)
CREATE TABLE message_mention (
    user_id    INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id, seq)
);

-- ───────────────────────────── events ─────────────────────────────

-- the transactional outbox: written in the same transaction as the change it describes.
-- SQLite has one writer, so positions become visible in order; tx_id is always 0 here
-- (PostgreSQL records the transaction id: see its schema).
CREATE TABLE outbox (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id          INTEGER NOT NULL DEFAULT 0,
    event_id       INTEGER NOT NULL UNIQUE,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_key  TEXT NOT NULL,
    payload        TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    published_at   INTEGER
);
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;
CREATE INDEX outbox_log ON outbox (tx_id, position);

-- each consumer's position in the outbox log: (tx_id, position) of the last event applied
CREATE TABLE consumer_offset (
    consumer   TEXT PRIMARY KEY,
    tx_id      INTEGER NOT NULL DEFAULT 0,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- server-wide secrets generated on first start (the JWT signing key when none is configured)
CREATE TABLE server_secret (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- ───────────────────────────── read side ─────────────────────────────
-- Every row is keyed by its owner user id first, so the read side can later be split
-- by the seeds' user_id % 256 logical shards.

CREATE TABLE user_conversation_view (
    user_id                  INTEGER NOT NULL,
    channel_id               INTEGER NOT NULL,
    conversation_type        TEXT NOT NULL CHECK (conversation_type IN ('single', 'group')),
    conversation_name        TEXT NOT NULL DEFAULT '',
    conversation_avatar      TEXT NOT NULL DEFAULT '',
    conversation_info_ver    INTEGER NOT NULL DEFAULT 1,
    peer_user_id             INTEGER,
    peer_nickname            TEXT NOT NULL DEFAULT '',
    peer_avatar              TEXT NOT NULL DEFAULT '',
    remark_name              TEXT NOT NULL DEFAULT '',
    is_muted                 INTEGER NOT NULL DEFAULT 0,
    is_pinned                INTEGER NOT NULL DEFAULT 0,
    is_hidden                INTEGER NOT NULL DEFAULT 0,
    last_message_id          INTEGER,
    last_message_seq         INTEGER NOT NULL DEFAULT 0,
    last_message_type        TEXT,
    last_message_content     TEXT CHECK (length(last_message_content) <= 512),
    last_message_sender_id   INTEGER,
    last_message_sender_name TEXT,
    last_message_time        INTEGER,
    -- max(opened_at, last_message_time): the list's sort key
    last_active_at           INTEGER NOT NULL,
    unread_count             INTEGER NOT NULL DEFAULT 0,
    mention_count            INTEGER NOT NULL DEFAULT 0,
    opened_at                INTEGER NOT NULL,
    closed_at                INTEGER,
    version                  INTEGER NOT NULL DEFAULT 1,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);
CREATE INDEX user_conversation_view_list ON user_conversation_view
    (user_id, is_pinned DESC, last_active_at DESC, channel_id DESC)
    WHERE closed_at IS NULL AND is_hidden = 0;
-- fan-out of a channel's changes to its members' rows
CREATE INDEX user_conversation_view_channel ON user_conversation_view (channel_id);

CREATE TABLE user_contact_view (
    user_id          INTEGER NOT NULL,
    contact_id       INTEGER NOT NULL,
    contact_nickname TEXT NOT NULL DEFAULT '',
    contact_avatar   TEXT NOT NULL DEFAULT '',
    contact_info_ver INTEGER NOT NULL DEFAULT 1,
    remark_name      TEXT NOT NULL DEFAULT '',
    -- lower-cased display name (remark, else nickname) and its first letter
    sort_name        TEXT NOT NULL DEFAULT '',
    initial          TEXT NOT NULL DEFAULT '#',
    group_name       TEXT NOT NULL DEFAULT 'friends',
    tags             TEXT NOT NULL DEFAULT '[]',
    is_starred       INTEGER NOT NULL DEFAULT 0,
    is_blocked       INTEGER NOT NULL DEFAULT 0,
    source           TEXT NOT NULL DEFAULT 'search',
    added_at         INTEGER NOT NULL,
    deleted_at       INTEGER,
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX user_contact_view_list ON user_contact_view
    (user_id, is_starred DESC, sort_name, contact_id)
    WHERE deleted_at IS NULL;

-- who shows user X as a conversation peer: (X, owner, channel)
CREATE TABLE conversation_reverse_index (
    peer_user_id  INTEGER NOT NULL,
    owner_user_id INTEGER NOT NULL,
    channel_id    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (peer_user_id, owner_user_id, channel_id)
);

-- who lists user X as a contact: (X, owner)
CREATE TABLE contact_reverse_index (
    contact_user_id INTEGER NOT NULL,
    owner_user_id   INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (contact_user_id, owner_user_id)
);
