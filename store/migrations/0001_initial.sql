-- postlist schema, version 1.
--
-- Written for a human with sqlite3: plain table names, addresses as text,
-- timestamps as ISO-8601 UTC text (YYYY-MM-DDTHH:MM:SS.sssZ, so text order is
-- time order), states as words. docs/schema.md describes every column.

-- Site-wide values (the VERP signing secret, for example).
CREATE TABLE site (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Mail domains that host lists. An alias domain points at its main domain
-- with alias_of; mail to list@alias is mail to list@main.
CREATE TABLE domains (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    alias_of   INTEGER REFERENCES domains(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    CHECK (name = lower(name))
);

-- Mailing lists with their settings. Setting names are Mailman 3's.
CREATE TABLE lists (
    id                        INTEGER PRIMARY KEY,
    name                      TEXT NOT NULL COLLATE NOCASE,  -- local part: "test"
    domain_id                 INTEGER NOT NULL REFERENCES domains(id) ON DELETE RESTRICT,
    address                   TEXT NOT NULL UNIQUE COLLATE NOCASE, -- "test@lists.example.org"
    list_id                   TEXT NOT NULL UNIQUE,          -- RFC 2919: "test.lists.example.org"
    display_name              TEXT NOT NULL DEFAULT '',
    description               TEXT NOT NULL DEFAULT '',
    created_at                TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    -- posting rules
    default_member_action     TEXT NOT NULL DEFAULT 'defer'
        CHECK (default_member_action IN ('accept','hold','reject','discard','defer')),
    default_nonmember_action  TEXT NOT NULL DEFAULT 'hold'
        CHECK (default_nonmember_action IN ('accept','hold','reject','discard','defer')),
    emergency                 INTEGER NOT NULL DEFAULT 0 CHECK (emergency IN (0,1)),
    moderator_password        TEXT,
    max_message_size          INTEGER NOT NULL DEFAULT 40,   -- KiB, 0 = no limit (Mailman's unit)
    require_explicit_destination INTEGER NOT NULL DEFAULT 1 CHECK (require_explicit_destination IN (0,1)),
    max_num_recipients        INTEGER NOT NULL DEFAULT 10,   -- 0 = no limit
    -- decoration
    subject_prefix            TEXT NOT NULL DEFAULT '',
    footer                    TEXT NOT NULL DEFAULT '',
    archive_url               TEXT NOT NULL DEFAULT '',
    reply_goes_to_list        TEXT NOT NULL DEFAULT 'no_munging'
        CHECK (reply_goes_to_list IN ('no_munging','point_to_list','explicit_header')),
    reply_to_address          TEXT NOT NULL DEFAULT '',
    dmarc_mitigate_action     TEXT NOT NULL DEFAULT 'no_mitigation'
        CHECK (dmarc_mitigate_action IN ('no_mitigation','munge_from','wrap_message')),
    -- delivery
    personalize               TEXT NOT NULL DEFAULT 'none' CHECK (personalize IN ('none','individual','full')),
    verp                      INTEGER NOT NULL DEFAULT 1 CHECK (verp IN (0,1)),
    -- membership
    subscription_policy       TEXT NOT NULL DEFAULT 'confirm'
        CHECK (subscription_policy IN ('open','confirm','moderate','confirm_then_moderate','closed')),
    unsubscription_policy     TEXT NOT NULL DEFAULT 'confirm'
        CHECK (unsubscription_policy IN ('open','confirm','moderate','confirm_then_moderate')),
    send_welcome_message      INTEGER NOT NULL DEFAULT 1 CHECK (send_welcome_message IN (0,1)),
    send_goodbye_message      INTEGER NOT NULL DEFAULT 1 CHECK (send_goodbye_message IN (0,1)),
    admin_immed_notify        INTEGER NOT NULL DEFAULT 1 CHECK (admin_immed_notify IN (0,1)),
    -- bounces
    process_bounces           INTEGER NOT NULL DEFAULT 1 CHECK (process_bounces IN (0,1)),
    bounce_score_threshold    REAL NOT NULL DEFAULT 5.0,
    bounce_info_stale_after   TEXT NOT NULL DEFAULT '7d',
    bounce_you_are_disabled_warnings INTEGER NOT NULL DEFAULT 3,
    bounce_you_are_disabled_warnings_interval TEXT NOT NULL DEFAULT '7d',
    forward_unrecognized_bounces_to TEXT NOT NULL DEFAULT 'administrators'
        CHECK (forward_unrecognized_bounces_to IN ('administrators','site_owner','discard')),
    accept_unsigned_verp      INTEGER NOT NULL DEFAULT 0 CHECK (accept_unsigned_verp IN (0,1)),
    UNIQUE (name, domain_id)
);
CREATE INDEX lists_domain ON lists(domain_id);

-- Everyone with a relation to a list: members, owners, moderators, and
-- nonmembers with a per-address moderation action.
CREATE TABLE members (
    id                   INTEGER PRIMARY KEY,
    list_id              INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    address              TEXT NOT NULL COLLATE NOCASE,
    display_name         TEXT NOT NULL DEFAULT '',
    role                 TEXT NOT NULL DEFAULT 'member'
        CHECK (role IN ('member','owner','moderator','nonmember')),
    delivery_status      TEXT NOT NULL DEFAULT 'enabled'
        CHECK (delivery_status IN ('enabled','by_user','by_moderator','by_bounces')),
    delivery_mode        TEXT NOT NULL DEFAULT 'regular'
        CHECK (delivery_mode IN ('regular','plaintext_digests','mime_digests','summary_digests')),
    moderation_action    TEXT  -- NULL: the list's default action applies
        CHECK (moderation_action IS NULL OR moderation_action IN ('accept','hold','reject','discard','defer')),
    receive_own_postings INTEGER NOT NULL DEFAULT 1 CHECK (receive_own_postings IN (0,1)),
    bounce_score         REAL NOT NULL DEFAULT 0,
    last_bounce_at       TEXT,
    warnings_sent        INTEGER NOT NULL DEFAULT 0,
    last_warning_at      TEXT,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (list_id, address, role)
);
CREATE INDEX members_address ON members(address);

-- Banned addresses; a pattern starting with ^ is a regular expression, as
-- in Mailman. list_id NULL bans site-wide.
CREATE TABLE bans (
    id         INTEGER PRIMARY KEY,
    list_id    INTEGER REFERENCES lists(id) ON DELETE CASCADE,
    pattern    TEXT NOT NULL COLLATE NOCASE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (list_id, pattern)
);

-- Every message postlist accepted, stored once whatever the number of
-- recipients.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL DEFAULT '',   -- the Message-ID header
    sender      TEXT NOT NULL DEFAULT '',   -- envelope sender (MAIL FROM), '' for <>
    queue_id    TEXT NOT NULL DEFAULT '',   -- Postfix queue id, for tracing
    size        INTEGER NOT NULL,
    body        BLOB NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- One row per (message, accepted LMTP recipient): the work queue of the
-- processing stages. kind is the subaddress the mail came in on.
CREATE TABLE intake (
    id           INTEGER PRIMARY KEY,
    message_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    list_id      INTEGER REFERENCES lists(id) ON DELETE SET NULL,
    recipient    TEXT NOT NULL,
    kind         TEXT NOT NULL
        CHECK (kind IN ('post','bounces','confirm','join','leave','owner','request')),
    extension    TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new','done','failed')),
    result       TEXT NOT NULL DEFAULT '',    -- what processing decided, and why
    received_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    processed_at TEXT
);
CREATE INDEX intake_new ON intake(state, id) WHERE state = 'new';
CREATE INDEX intake_message ON intake(message_id);

-- One row per (message, recipient) to send.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    list_id         INTEGER REFERENCES lists(id) ON DELETE CASCADE,
    recipient       TEXT NOT NULL,
    envelope_from   TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued','sending','sent','deferred','failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_reply      TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (message_id, recipient)
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at)
    WHERE state IN ('queued','deferred','sending');

-- Posts waiting for a moderator.
CREATE TABLE held (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    sender      TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT 'held'
        CHECK (state IN ('held','approved','rejected','discarded')),
    held_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    decided_at  TEXT,
    decided_by  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX held_state ON held(state, list_id);

-- Pending confirmations: a subscription is a tokens row, never a members
-- row, until it is confirmed.
CREATE TABLE tokens (
    token        TEXT PRIMARY KEY,
    list_id      INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('subscribe','unsubscribe','held','moderate')),
    address      TEXT NOT NULL COLLATE NOCASE,
    display_name TEXT NOT NULL DEFAULT '',
    data         TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    expires_at   TEXT NOT NULL
);
CREATE INDEX tokens_expiry ON tokens(expires_at);

-- Every bounce received, scored or not.
CREATE TABLE bounces (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER REFERENCES lists(id) ON DELETE CASCADE,
    address     TEXT NOT NULL COLLATE NOCASE,
    kind        TEXT NOT NULL CHECK (kind IN ('permanent','temporary','policy','unknown')),
    scored      INTEGER NOT NULL DEFAULT 0 CHECK (scored IN (0,1)),
    diagnostic  TEXT NOT NULL DEFAULT '',
    message_id  INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX bounces_member ON bounces(list_id, address);

-- What happened, for admins: subscriptions, removals, bounce actions,
-- moderation decisions. Append-only.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    list_id INTEGER REFERENCES lists(id) ON DELETE SET NULL,
    address TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_list ON events(list_id, at);
CREATE INDEX events_kind ON events(kind, at);

-- A change counter the daemon polls to notice CLI edits without a restart:
-- triggers bump it whenever anything the address index depends on changes.
CREATE TABLE generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);

CREATE TRIGGER domains_ai AFTER INSERT ON domains BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER domains_ad AFTER DELETE ON domains BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER domains_au AFTER UPDATE ON domains BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER lists_ai AFTER INSERT ON lists BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER lists_ad AFTER DELETE ON lists BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER lists_au AFTER UPDATE ON lists BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER members_ai AFTER INSERT ON members BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER members_ad AFTER DELETE ON members BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER members_au AFTER UPDATE OF address, role, list_id, moderation_action ON members
    BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER bans_ai AFTER INSERT ON bans BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER bans_ad AFTER DELETE ON bans BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER tokens_ai AFTER INSERT ON tokens BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER tokens_ad AFTER DELETE ON tokens BEGIN UPDATE generation SET value = value + 1; END;

-- Admin views: the questions asked most often.

-- How much is waiting to go out, by state.
CREATE VIEW queue_summary AS
SELECT state, count(*) AS deliveries, count(DISTINCT message_id) AS messages,
       min(created_at) AS oldest, min(next_attempt_at) AS next_attempt
FROM deliveries GROUP BY state;

-- Per message: what is still to be delivered.
CREATE VIEW queue AS
SELECT d.message_id, l.address AS list, m.message_id AS message_header_id, m.sender,
       sum(d.state = 'queued') AS queued, sum(d.state = 'sending') AS sending,
       sum(d.state = 'deferred') AS deferred, sum(d.state = 'sent') AS sent,
       sum(d.state = 'failed') AS failed, min(d.next_attempt_at) AS next_attempt
FROM deliveries d JOIN messages m ON m.id = d.message_id LEFT JOIN lists l ON l.id = d.list_id
GROUP BY d.message_id;

-- Messages held for moderation, oldest first.
CREATE VIEW held_messages AS
SELECT h.id, l.address AS list, h.sender, h.subject, h.reason, h.held_at, m.size
FROM held h JOIN lists l ON l.id = h.list_id JOIN messages m ON m.id = h.message_id
WHERE h.state = 'held' ORDER BY h.held_at;

-- Members with a bounce score, worst first.
CREATE VIEW bouncing_members AS
SELECT l.address AS list, mb.address, mb.bounce_score, mb.last_bounce_at,
       mb.delivery_status, mb.warnings_sent
FROM members mb JOIN lists l ON l.id = mb.list_id
WHERE mb.bounce_score > 0 OR mb.delivery_status = 'by_bounces'
ORDER BY mb.bounce_score DESC, mb.address;

-- Intake rows still waiting for a processing stage.
CREATE VIEW intake_pending AS
SELECT i.id, i.kind, i.recipient, m.sender, m.message_id, i.received_at
FROM intake i JOIN messages m ON m.id = i.message_id WHERE i.state = 'new' ORDER BY i.id;
