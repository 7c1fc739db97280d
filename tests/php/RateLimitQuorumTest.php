<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\OnQuorumQueues;

require_once __DIR__ . '/RateLimitTest.php';

/**
 * The rate limits of a worker on quorum queues: the same checks (the counters are classic queues whatever
 * the queue type; a held-back task goes through quorum delay levels and ready queue). The topic rate is
 * measured 10 s here (30 s in RateLimitTest).
 */
final class RateLimitQuorumTest extends RateLimitTest
{
    use OnQuorumQueues;

    protected const RATE_SECS = 10;
}
