-- Eligibility rules are data: versioned rule sets seeded here and loaded by
-- the service at start. A new year's figures arrive as a new migration that
-- adds rows under a new rule set name; nothing is updated in place, so a
-- determination can always be traced to the exact figures behind it.

-- HHS poverty guidelines, as published in the Federal Register (for 2025:
-- 90 FR 5917, January 17, 2025). One row per year and guideline region:
-- the annual guideline for a household of one and the amount added for each
-- additional person. Amounts are in cents.
CREATE TABLE poverty_guidelines (
    guideline_year                 int    NOT NULL,
    region                         text   NOT NULL CHECK (region IN ('contiguous', 'alaska', 'hawaii')),
    first_person_annual_cents      bigint NOT NULL CHECK (first_person_annual_cents > 0),
    additional_person_annual_cents bigint NOT NULL CHECK (additional_person_annual_cents > 0),
    source                         text   NOT NULL,
    PRIMARY KEY (guideline_year, region)
);

INSERT INTO poverty_guidelines VALUES
    (2025, 'contiguous', 1565000, 550000, 'HHS 2025 poverty guidelines, 48 contiguous states and DC'),
    (2025, 'alaska',     1955000, 688000, 'HHS 2025 poverty guidelines, Alaska'),
    (2025, 'hawaii',     1799000, 633000, 'HHS 2025 poverty guidelines, Hawaii');

-- The jurisdictions covered and which guideline each one uses. Territories
-- are not covered: their programs follow different rules.
CREATE TABLE states (
    code             char(2) PRIMARY KEY CHECK (code ~ '^[A-Z]{2}$'),
    name             text    NOT NULL,
    guideline_region text    NOT NULL CHECK (guideline_region IN ('contiguous', 'alaska', 'hawaii'))
);

INSERT INTO states (code, name, guideline_region) VALUES
    ('AL', 'Alabama', 'contiguous'), ('AK', 'Alaska', 'alaska'),
    ('AZ', 'Arizona', 'contiguous'), ('AR', 'Arkansas', 'contiguous'),
    ('CA', 'California', 'contiguous'), ('CO', 'Colorado', 'contiguous'),
    ('CT', 'Connecticut', 'contiguous'), ('DE', 'Delaware', 'contiguous'),
    ('DC', 'District of Columbia', 'contiguous'), ('FL', 'Florida', 'contiguous'),
    ('GA', 'Georgia', 'contiguous'), ('HI', 'Hawaii', 'hawaii'),
    ('ID', 'Idaho', 'contiguous'), ('IL', 'Illinois', 'contiguous'),
    ('IN', 'Indiana', 'contiguous'), ('IA', 'Iowa', 'contiguous'),
    ('KS', 'Kansas', 'contiguous'), ('KY', 'Kentucky', 'contiguous'),
    ('LA', 'Louisiana', 'contiguous'), ('ME', 'Maine', 'contiguous'),
    ('MD', 'Maryland', 'contiguous'), ('MA', 'Massachusetts', 'contiguous'),
    ('MI', 'Michigan', 'contiguous'), ('MN', 'Minnesota', 'contiguous'),
    ('MS', 'Mississippi', 'contiguous'), ('MO', 'Missouri', 'contiguous'),
    ('MT', 'Montana', 'contiguous'), ('NE', 'Nebraska', 'contiguous'),
    ('NV', 'Nevada', 'contiguous'), ('NH', 'New Hampshire', 'contiguous'),
    ('NJ', 'New Jersey', 'contiguous'), ('NM', 'New Mexico', 'contiguous'),
    ('NY', 'New York', 'contiguous'), ('NC', 'North Carolina', 'contiguous'),
    ('ND', 'North Dakota', 'contiguous'), ('OH', 'Ohio', 'contiguous'),
    ('OK', 'Oklahoma', 'contiguous'), ('OR', 'Oregon', 'contiguous'),
    ('PA', 'Pennsylvania', 'contiguous'), ('RI', 'Rhode Island', 'contiguous'),
    ('SC', 'South Carolina', 'contiguous'), ('SD', 'South Dakota', 'contiguous'),
    ('TN', 'Tennessee', 'contiguous'), ('TX', 'Texas', 'contiguous'),
    ('UT', 'Utah', 'contiguous'), ('VT', 'Vermont', 'contiguous'),
    ('VA', 'Virginia', 'contiguous'), ('WA', 'Washington', 'contiguous'),
    ('WV', 'West Virginia', 'contiguous'), ('WI', 'Wisconsin', 'contiguous'),
    ('WY', 'Wyoming', 'contiguous');

-- A rule set is one program's income test for one period. effective_through
-- is NULL while no successor has been published.
CREATE TABLE rule_sets (
    name              text PRIMARY KEY,
    program           text NOT NULL CHECK (program IN ('snap', 'medicaid')),
    guideline_year    int  NOT NULL,
    fpl_percent       int  NOT NULL CHECK (fpl_percent > 0),
    effective_from    date NOT NULL,
    effective_through date,
    source            text NOT NULL,
    rounding          text NOT NULL,
    CHECK (effective_through IS NULL OR effective_through >= effective_from)
);

-- Monthly income limits for households of 1 to 8, per guideline region.
CREATE TABLE income_limits (
    rule_set            text   NOT NULL REFERENCES rule_sets (name),
    region              text   NOT NULL CHECK (region IN ('contiguous', 'alaska', 'hawaii')),
    household_size      int    NOT NULL CHECK (household_size BETWEEN 1 AND 8),
    monthly_limit_cents bigint NOT NULL CHECK (monthly_limit_cents > 0),
    PRIMARY KEY (rule_set, region, household_size)
);

-- What each member beyond eight adds to the monthly limit.
CREATE TABLE income_limit_increments (
    rule_set                         text   NOT NULL REFERENCES rule_sets (name),
    region                           text   NOT NULL CHECK (region IN ('contiguous', 'alaska', 'hawaii')),
    additional_member_monthly_cents  bigint NOT NULL CHECK (additional_member_monthly_cents > 0),
    PRIMARY KEY (rule_set, region)
);

-- SNAP gross monthly income limits, FY 2026 (October 1, 2025 through
-- September 30, 2026): 130 percent of the 2025 guidelines, divided by 12
-- and rounded up to the next whole dollar, as USDA FNS publishes them in
-- its FY 2026 cost-of-living adjustment table. The "each additional member"
-- amount is USDA's own figure (130 percent of the guideline increment,
-- divided by 12, rounded up), not the difference between two table rows.
INSERT INTO rule_sets VALUES
    ('snap-gross-130-fy2026', 'snap', 2025, 130, '2025-10-01', '2026-09-30',
     'USDA FNS SNAP FY 2026 income eligibility standards, gross monthly income limit (130% of poverty)',
     'annual guideline x 1.30 / 12, rounded up to the next whole dollar');

INSERT INTO income_limits (rule_set, region, household_size, monthly_limit_cents) VALUES
    ('snap-gross-130-fy2026', 'contiguous', 1, 169600), ('snap-gross-130-fy2026', 'contiguous', 2, 229200),
    ('snap-gross-130-fy2026', 'contiguous', 3, 288800), ('snap-gross-130-fy2026', 'contiguous', 4, 348300),
    ('snap-gross-130-fy2026', 'contiguous', 5, 407900), ('snap-gross-130-fy2026', 'contiguous', 6, 467500),
    ('snap-gross-130-fy2026', 'contiguous', 7, 527100), ('snap-gross-130-fy2026', 'contiguous', 8, 586700),
    ('snap-gross-130-fy2026', 'alaska', 1, 211800), ('snap-gross-130-fy2026', 'alaska', 2, 286400),
    ('snap-gross-130-fy2026', 'alaska', 3, 360900), ('snap-gross-130-fy2026', 'alaska', 4, 435400),
    ('snap-gross-130-fy2026', 'alaska', 5, 510000), ('snap-gross-130-fy2026', 'alaska', 6, 584500),
    ('snap-gross-130-fy2026', 'alaska', 7, 659000), ('snap-gross-130-fy2026', 'alaska', 8, 733600),
    ('snap-gross-130-fy2026', 'hawaii', 1, 194900), ('snap-gross-130-fy2026', 'hawaii', 2, 263500),
    ('snap-gross-130-fy2026', 'hawaii', 3, 332100), ('snap-gross-130-fy2026', 'hawaii', 4, 400700),
    ('snap-gross-130-fy2026', 'hawaii', 5, 469200), ('snap-gross-130-fy2026', 'hawaii', 6, 537800),
    ('snap-gross-130-fy2026', 'hawaii', 7, 606400), ('snap-gross-130-fy2026', 'hawaii', 8, 675000);

INSERT INTO income_limit_increments (rule_set, region, additional_member_monthly_cents) VALUES
    ('snap-gross-130-fy2026', 'contiguous', 59600),
    ('snap-gross-130-fy2026', 'alaska', 74600),
    ('snap-gross-130-fy2026', 'hawaii', 68600);

-- Medicaid adult expansion group: 138 percent of the 2025 guidelines
-- (133 percent plus the 5 percent income disregard). The monthly limit is
-- annual guideline x 1.38 / 12, rounded down to the cent so that the limit
-- never exceeds 138 percent; with 2025's figures (all multiples of $10) the
-- division is exact and no rounding happens. The limits are derived here
-- from the guideline rows above rather than typed in, so they cannot drift
-- from them.
INSERT INTO rule_sets VALUES
    ('medicaid-expansion-138-2025', 'medicaid', 2025, 138, '2025-01-15', NULL,
     'ACA Medicaid expansion adult group at 138% of the 2025 HHS poverty guidelines',
     'annual guideline x 1.38 / 12, rounded down to the cent');

INSERT INTO income_limits (rule_set, region, household_size, monthly_limit_cents)
SELECT 'medicaid-expansion-138-2025', g.region, n,
       ((g.first_person_annual_cents + (n - 1) * g.additional_person_annual_cents) * 138) / 1200
FROM poverty_guidelines g, generate_series(1, 8) AS n
WHERE g.guideline_year = 2025;

INSERT INTO income_limit_increments (rule_set, region, additional_member_monthly_cents)
SELECT 'medicaid-expansion-138-2025', g.region, (g.additional_person_annual_cents * 138) / 1200
FROM poverty_guidelines g
WHERE g.guideline_year = 2025;
