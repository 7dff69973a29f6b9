-- hermet schema v1 (PostgreSQL). Timestamps are Unix milliseconds (BIGINT); ids are
-- 64-bit snowflakes made by the application. Enumerations are TEXT with CHECK so the
-- SQLite schema can match them exactly.

-- ───────────────────────────── write side ─────────────────────────────

CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    email         TEXT,
    mobile        TEXT,
    password_hash TEXT,
    nickname      TEXT NOT NULL CHECK (char_length(nickname) BETWEEN 1 AND 64),
    -- lower-cased nickname, compared byte-wise for prefix search (same rule as SQLite)
    search_name   TEXT COLLATE "C" NOT NULL,
    avatar        TEXT NOT NULL DEFAULT '' CHECK (char_length(avatar) <= 256),
    gender        TEXT NOT NULL DEFAULT 'unknown' CHECK (gender IN ('unknown', 'male', 'female')),
    region        TEXT NOT NULL DEFAULT '' CHECK (char_length(region) <= 64),
    birthday      TEXT,
    tagline       TEXT NOT NULL DEFAULT '' CHECK (char_length(tagline) <= 256),
    profile_ver   BIGINT NOT NULL DEFAULT 1,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'deleted')),
    deleted_at    BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT users_has_account CHECK (email IS NOT NULL OR mobile IS NOT NULL)
);
-- e-mail and mobile are unique among live (not deleted) users
CREATE UNIQUE INDEX users_email_live ON users (email) WHERE email IS NOT NULL AND status <> 'deleted';
CREATE UNIQUE INDEX users_mobile_live ON users (mobile) WHERE mobile IS NOT NULL AND status <> 'deleted';
CREATE INDEX users_search ON users (search_name, id) WHERE status = 'active';

-- a sign-in session: one refresh-token family; access tokens name their session
CREATE TABLE session (
    id            BIGINT PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    created_at    BIGINT NOT NULL,
    refreshed_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT,
    user_agent    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX session_user_live ON session (user_id) WHERE revoked_at IS NULL;

-- every refresh token ever issued (SHA-256 of the secret); a rotated one presented
-- again means the family leaked, and the session is revoked
CREATE TABLE refresh_token (
    token_hash TEXT PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_token_session ON refresh_token (session_id);

CREATE TABLE channel (
    id                       BIGINT PRIMARY KEY,
    channel_type             TEXT NOT NULL CHECK (channel_type IN ('single', 'group')),
    name                     TEXT NOT NULL DEFAULT '',
    avatar                   TEXT NOT NULL DEFAULT '',
    status                   TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('creating', 'active', 'failed', 'archived')),
    channel_info_ver         BIGINT NOT NULL DEFAULT 1,
    member_count             INTEGER NOT NULL DEFAULT 0,
    last_message_at          BIGINT,
    last_seq                 BIGINT NOT NULL DEFAULT 0,
    -- the channel's last-message snapshot (read diffusion for large groups)
    last_message_id          BIGINT,
    last_message_type        TEXT,
    last_message_content     TEXT,
    last_message_sender_id   BIGINT,
    last_message_sender_name TEXT,
    -- 'minUserId:maxUserId' for single channels, so a pair reuses its channel
    single_pair              TEXT,
    archived_at              BIGINT,
    creator_id               BIGINT NOT NULL,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);
CREATE UNIQUE INDEX channel_single_pair ON channel (single_pair) WHERE single_pair IS NOT NULL;

CREATE TABLE channel_member (
    id             BIGINT PRIMARY KEY,
    channel_id     BIGINT NOT NULL,
    user_id        BIGINT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    group_nickname TEXT NOT NULL DEFAULT '',
    joined_at      BIGINT NOT NULL,
    left_at        BIGINT,
    -- history visible to the member: seq in (join_seq, left_seq]
    join_seq       BIGINT NOT NULL DEFAULT 0,
    left_seq       BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CONSTRAINT channel_member_channel_user UNIQUE (channel_id, user_id)
);
CREATE INDEX channel_member_user ON channel_member (user_id);

CREATE TABLE channel_read_record (
    user_id       BIGINT NOT NULL,
    channel_id    BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

-- a member's settings of a conversation: the write side of pinned/muted/hidden/closed.
-- Hiding or closing records the channel's seq at that moment; a later message shows the
-- conversation again without touching this row.
CREATE TABLE conversation_setting (
    user_id    BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    is_pinned  BOOLEAN NOT NULL DEFAULT FALSE,
    is_muted   BOOLEAN NOT NULL DEFAULT FALSE,
    is_hidden  BOOLEAN NOT NULL DEFAULT FALSE,
    hidden_seq BIGINT NOT NULL DEFAULT 0,
    closed_at  BIGINT,
    closed_seq BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

CREATE TABLE friendship (
    user_id     BIGINT NOT NULL,
    friend_id   BIGINT NOT NULL,
    remark_name TEXT NOT NULL DEFAULT '',
    -- lower-cased remark (same folding as users.search_name), for contact ordering
    remark_key  TEXT COLLATE "C" NOT NULL DEFAULT '',
    source      TEXT NOT NULL CHECK (source IN ('search', 'qrcode', 'group')),
    tags        JSONB NOT NULL DEFAULT '[]',
    group_name  TEXT NOT NULL DEFAULT 'friends',
    is_starred  BOOLEAN NOT NULL DEFAULT FALSE,
    is_blocked  BOOLEAN NOT NULL DEFAULT FALSE,
    added_at    BIGINT NOT NULL,
    deleted_at  BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE contact_application (
    id           BIGINT PRIMARY KEY,
    applicant_id BIGINT NOT NULL,
    target_id    BIGINT NOT NULL,
    message      TEXT NOT NULL DEFAULT '',
    source       TEXT NOT NULL CHECK (source IN ('search', 'qrcode', 'group')),
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    reviewed_at  BIGINT
);
CREATE UNIQUE INDEX contact_application_pending ON contact_application (applicant_id, target_id) WHERE status = 'pending';
CREATE INDEX contact_application_target ON contact_application (target_id, status, updated_at DESC);
CREATE INDEX contact_application_applicant ON contact_application (applicant_id, status, updated_at DESC);

-- join requests to groups
CREATE TABLE channel_application (
    id           BIGINT PRIMARY KEY,
    channel_id   BIGINT NOT NULL,
    applicant_id BIGINT NOT NULL,
    message      TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    reviewer_id  BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    reviewed_at  BIGINT
);
CREATE UNIQUE INDEX channel_application_pending ON channel_application (channel_id, applicant_id) WHERE status = 'pending';
CREATE INDEX channel_application_channel ON channel_application (channel_id, status, updated_at DESC);

CREATE TABLE message (
    id            BIGINT PRIMARY KEY,
    channel_id    BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    sender_id     BIGINT NOT NULL,
    -- the sender's display name and the list preview, as at send time
    sender_name   TEXT NOT NULL DEFAULT '',
    msg_type      TEXT NOT NULL CHECK (msg_type IN ('text', 'image', 'voice', 'video', 'file', 'custom', 'system')),
    content       JSONB NOT NULL,
    mentions      JSONB NOT NULL DEFAULT '[]',
    mention_all   BOOLEAN NOT NULL DEFAULT FALSE,
    preview       TEXT NOT NULL DEFAULT '',
    client_msg_id TEXT,
    created_at    BIGINT NOT NULL,
    CONSTRAINT message_channel_seq UNIQUE (channel_id, seq),
    CONSTRAINT message_sender_client_msg UNIQUE (sender_id, client_msg_id)
);
-- @all messages, counted per reader instead of writing a mention row per member
CREATE INDEX message_mention_all ON message (channel_id, seq) WHERE mention_all;

-- mentions recorded per mentioned user (large groups count mentions from here)
CREATE TABLE message_mention (
    user_id    BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id, seq)
);

-- ───────────────────────────── events ─────────────────────────────

-- the transactional outbox: written in the same transaction as the change it describes.
-- `position` alone is not a safe cursor on PostgreSQL: sequence values are taken before
-- commit, so a lower position can become visible after a higher one. Each row records its
-- transaction id; readers take only rows of transactions older than their snapshot's
-- xmin (all finished) in (tx_id, position) order, which never skips a row.
CREATE TABLE outbox (
    position       BIGSERIAL PRIMARY KEY,
    tx_id          BIGINT NOT NULL DEFAULT txid_current(),
    event_id       BIGINT NOT NULL UNIQUE,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_key  TEXT NOT NULL,
    payload        JSONB NOT NULL,
    created_at     BIGINT NOT NULL,
    published_at   BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;
CREATE INDEX outbox_log ON outbox (tx_id, position);

-- each consumer's position in the outbox log: (tx_id, position) of the last event applied
CREATE TABLE consumer_offset (
    consumer   TEXT PRIMARY KEY,
    tx_id      BIGINT NOT NULL DEFAULT 0,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- server-wide secrets generated on first start (the JWT signing key when none is configured)
CREATE TABLE server_secret (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- ───────────────────────────── read side ─────────────────────────────
-- Every row is keyed by its owner user id first, so the read side can later be split
-- by the seeds' user_id % 256 logical shards.

CREATE TABLE user_conversation_view (
    user_id                  BIGINT NOT NULL,
    channel_id               BIGINT NOT NULL,
    conversation_type        TEXT NOT NULL CHECK (conversation_type IN ('single', 'group')),
    conversation_name        TEXT NOT NULL DEFAULT '',
    conversation_avatar      TEXT NOT NULL DEFAULT '',
    conversation_info_ver    BIGINT NOT NULL DEFAULT 1,
    peer_user_id             BIGINT,
    peer_nickname            TEXT NOT NULL DEFAULT '',
    peer_avatar              TEXT NOT NULL DEFAULT '',
    remark_name              TEXT NOT NULL DEFAULT '',
    is_muted                 BOOLEAN NOT NULL DEFAULT FALSE,
    is_pinned                BOOLEAN NOT NULL DEFAULT FALSE,
    is_hidden                BOOLEAN NOT NULL DEFAULT FALSE,
    last_message_id          BIGINT,
    last_message_seq         BIGINT NOT NULL DEFAULT 0,
    last_message_type        TEXT,
    last_message_content     TEXT CHECK (char_length(last_message_content) <= 512),
    last_message_sender_id   BIGINT,
    last_message_sender_name TEXT,
    last_message_time        BIGINT,
    -- max(opened_at, last_message_time): the list's sort key
    last_active_at           BIGINT NOT NULL,
    unread_count             INTEGER NOT NULL DEFAULT 0,
    mention_count            INTEGER NOT NULL DEFAULT 0,
    opened_at                BIGINT NOT NULL,
    closed_at                BIGINT,
    version                  BIGINT NOT NULL DEFAULT 1,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id)
) WITH (fillfactor = 90);
CREATE INDEX user_conversation_view_list ON user_conversation_view
    (user_id, is_pinned DESC, last_active_at DESC, channel_id DESC)
    WHERE closed_at IS NULL AND NOT is_hidden;
-- fan-out of a channel's changes to its members' rows
CREATE INDEX user_conversation_view_channel ON user_conversation_view (channel_id);

CREATE TABLE user_contact_view (
    user_id          BIGINT NOT NULL,
    contact_id       BIGINT NOT NULL,
    contact_nickname TEXT NOT NULL DEFAULT '',
    contact_avatar   TEXT NOT NULL DEFAULT '',
    contact_info_ver BIGINT NOT NULL DEFAULT 1,
    remark_name      TEXT NOT NULL DEFAULT '',
    -- lower-cased display name (remark, else nickname) and its first letter
    sort_name        TEXT COLLATE "C" NOT NULL DEFAULT '',
    initial          TEXT NOT NULL DEFAULT '#',
    group_name       TEXT NOT NULL DEFAULT 'friends',
    tags             JSONB NOT NULL DEFAULT '[]',
    is_starred       BOOLEAN NOT NULL DEFAULT FALSE,
    is_blocked       BOOLEAN NOT NULL DEFAULT FALSE,
    source           TEXT NOT NULL DEFAULT 'search',
    added_at         BIGINT NOT NULL,
    deleted_at       BIGINT,
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) WITH (fillfactor = 90);
CREATE INDEX user_contact_view_list ON user_contact_view
    (user_id, is_starred DESC, sort_name, contact_id)
    WHERE deleted_at IS NULL;

-- who shows user X as a conversation peer: (X, owner, channel)
CREATE TABLE conversation_reverse_index (
    peer_user_id  BIGINT NOT NULL,
    owner_user_id BIGINT NOT NULL,
    channel_id    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (peer_user_id, owner_user_id, channel_id)
);

-- who lists user X as a contact: (X, owner)
CREATE TABLE contact_reverse_index (
    contact_user_id BIGINT NOT NULL,
    owner_user_id   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (contact_user_id, owner_user_id)
);
