-- Rule changes are announced so that every instance invalidates what it
-- cached. Each statement that changes a rule table bumps one revision
-- counter in the same transaction and notifies the channel
-- eligibility_rules_changed with the new revision; PostgreSQL delivers the
-- notification only when that transaction commits. Cached determinations
-- are keyed by revision, so an instance that learns of revision N+1 never
-- reads an answer computed under N again, and deletes those answers.

CREATE TABLE rules_revision (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    revision   bigint      NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO rules_revision (revision) VALUES (1);

CREATE FUNCTION bump_rules_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_revision bigint;
BEGIN
    UPDATE rules_revision SET revision = revision + 1, changed_at = now()
    RETURNING revision INTO next_revision;
    PERFORM pg_notify('eligibility_rules_changed', next_revision::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER poverty_guidelines_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON poverty_guidelines
    FOR EACH STATEMENT EXECUTE FUNCTION bump_rules_revision();
CREATE TRIGGER states_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON states
    FOR EACH STATEMENT EXECUTE FUNCTION bump_rules_revision();
CREATE TRIGGER rule_sets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rule_sets
    FOR EACH STATEMENT EXECUTE FUNCTION bump_rules_revision();
CREATE TRIGGER income_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON income_limits
    FOR EACH STATEMENT EXECUTE FUNCTION bump_rules_revision();
CREATE TRIGGER income_limit_increments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON income_limit_increments
    FOR EACH STATEMENT EXECUTE FUNCTION bump_rules_revision();

-- Each determination looks up the program's newest rule set that has started.
CREATE INDEX rule_sets_program_effective_idx ON rule_sets (program, effective_from DESC);
