-- Batch envelopes (issue 10): several records of one Kafka message can be rejected, one dead
-- letter each. The record's index inside its message joins the key so they do not replace each
-- other; -1 marks a whole rejected message. 18.16 allows a new column in MODIFY ORDER BY only
-- without a default expression.
ALTER TABLE dead_letters ADD COLUMN record_index Int32, MODIFY ORDER BY (source_topic, kafka_partition, kafka_offset, record_index);
