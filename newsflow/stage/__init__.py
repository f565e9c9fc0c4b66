"""The shared stage machinery, one concern per module:

* ``outcomes``    what a stage's transform gives back (``Out``, ``Drop``, ``Quarantine``) and the batch the
                  runner hands to a sink; pure, so extraction workers import it without Kafka;
* ``deadletters`` the dead-letter record: its headers, how to read one back, the replay rules;
* ``sinks``       where a batch goes (``Sink`` Protocol) and the Kafka transactions (``KafkaTransactions``,
                  ``TransactionalKafkaSink``), shared with ``newsflow dlq replay``;
* ``runner``      the consume loop (``StageRunner``): polling, retries, back-pressure, rebalance, commits.

This package imports nothing on its own: import the module you need.
"""
