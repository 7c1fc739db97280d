<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * A test case whose queues are quorum queues: `ebats.queue_type = quorum` for this process (while a test runs)
 * and for every child process it starts.
 */
trait OnQuorumQueues
{
    protected function setUp(): void
    {
        parent::setUp();
        TestEnv::setEnv('EBATS_QUEUE_TYPE', 'quorum');
    }

    protected function tearDown(): void
    {
        TestEnv::setEnv('EBATS_QUEUE_TYPE', null);
        parent::tearDown();
    }

    protected static function childEnv(array $overrides = []): array
    {
        return parent::childEnv(array_merge(['EBATS_QUEUE_TYPE' => 'quorum'], $overrides));
    }
}
