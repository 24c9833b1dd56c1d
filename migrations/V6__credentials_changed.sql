-- API processes keep the principals of API keys in memory (services/auth/src/key_cache.rs) and
-- empty that cache whenever a key may have stopped being valid. These triggers tell them: any
-- statement that revokes or deletes a key, or removes, deletes or changes the identity of an
-- admin, notifies `gatehouse_credentials` when its transaction commits. Creating a key or an
-- admin, or setting a password, changes no key that is kept, so it notifies nothing.
CREATE FUNCTION notify_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_credentials', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();

CREATE TRIGGER admin_credentials_changed
    AFTER UPDATE OF admin_id, org_id, email, role, removed_at OR DELETE OR TRUNCATE ON admin_credentials
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();
