"""Features: the one definition of every model input and of the source schema. Pure DataFrame -> DataFrame
(or pandas -> pandas) logic: nothing here creates a SparkSession or reads or writes data."""
