"""The batch Spark jobs: cleaning with great-expectations and a quarantine (`fraud clean`), the training features
(`fraud features`), CatBoost training (`fraud train`), evaluation (`fraud evaluate`) and table maintenance
(`fraud maintain`)."""
