"""Storage: PostgreSQL through asyncpg; repositories, migrations' companions, secret encryption."""
