"""Create an Alembic revision from the tables: python scripts/new_migration.py "message" 0002"""
import sys
from alembic import command
from alembic.config import Config
from modelyard.store.db import MIGRATIONS
cfg = Config()
cfg.set_main_option("script_location", str(MIGRATIONS))
cfg.set_main_option("sqlalchemy.url", "sqlite:////tmp/gen.db")
command.revision(cfg, message=sys.argv[1], autogenerate=True, rev_id=sys.argv[2])
