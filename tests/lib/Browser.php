<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * A headless Chromium driven through WebDriver (Debian's chromium and chromium-driver): a small client of
 * the W3C WebDriver protocol over HTTP, enough to load pages, click, read the page and take screenshots.
 */
final class Browser
{
    private const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

    private Process $driver;
    private string $base;
    private string $session;

    public function __construct(string $logDir)
    {
        foreach (['chromium', 'chromedriver'] as $bin) {
            if (trim((string) shell_exec('command -v ' . $bin)) === '') {
                throw new \RuntimeException("$bin is missing: run scripts/setup (packages chromium, chromium-driver)");
            }
        }
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = (string) stream_socket_get_name($s, false);
        fclose($s);
        $port = (int) substr($name, strrpos($name, ':') + 1);
        $this->driver = Process::start(['chromedriver', "--port=$port"], [], [
            'name' => 'chromedriver', 'stdout' => "$logDir/chromedriver.out", 'stderr' => "$logDir/chromedriver.err",
        ]);
        $this->base = "http://127.0.0.1:$port";
        Process::until(fn () => ($this->call('GET', '/status', null, false)['value']['ready'] ?? false) ?: null, 20)
            ?? throw new \RuntimeException("chromedriver did not start\n" . $this->driver->describe());
        $r = $this->call('POST', '/session', ['capabilities' => ['alwaysMatch' => [
            'browserName' => 'chrome',
            'goog:chromeOptions' => [
                'binary' => '/usr/bin/chromium',
                'args' => ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,1000'],
            ],
        ]]]);
        $this->session = $r['value']['sessionId'];
    }

    /**
     * One request on a connection of its own, read by Content-Length (chromedriver keeps connections open, so
     * PHP's http:// wrapper, which reads to the end, would wait). The decoded answer; throws on a WebDriver
     * error unless $strict is false.
     *
     * @return array<string,mixed>
     */
    private function call(string $method, string $path, array|object|null $body = null, bool $strict = true): array
    {
        $payload = $body === null ? '' : json_encode($body, JSON_UNESCAPED_SLASHES);
        $raw = null;
        $url = parse_url($this->base);
        $s = @fsockopen($url['host'], $url['port'], $errno, $error, 5);
        if ($s !== false) {
            stream_set_timeout($s, 60);
            fwrite($s, "$method $path HTTP/1.1\r\nHost: {$url['host']}:{$url['port']}\r\nContent-Type: application/json\r\n"
                . 'Content-Length: ' . strlen($payload) . "\r\nConnection: close\r\n\r\n$payload");
            $head = '';
            while (!str_contains($head, "\r\n\r\n") && ($line = fgets($s)) !== false) {
                $head .= $line;
            }
            $length = preg_match('~^content-length:\s*(\d+)~mi', $head, $m) ? (int) $m[1] : null;
            $raw = '';
            while (($length === null || strlen($raw) < $length) && !feof($s)) {
                $chunk = fread($s, $length === null ? 65536 : $length - strlen($raw));
                if ($chunk === false || ($chunk === '' && stream_get_meta_data($s)['timed_out'])) {
                    break;
                }
                $raw .= $chunk;
            }
            fclose($s);
        }
        $answer = is_string($raw) ? (json_decode($raw, true) ?? []) : [];
        if ($strict && (!is_string($raw) || isset($answer['value']['error']))) {
            throw new \RuntimeException("WebDriver $method $path failed: " . (is_string($raw) ? substr($raw, 0, 2000) : 'no answer'));
        }
        return $answer;
    }

    private function s(string $path): string
    {
        return "/session/{$this->session}$path";
    }

    public function open(string $url): void
    {
        $this->call('POST', $this->s('/url'), ['url' => $url]);
    }

    /** Runs $script (a function body; arguments in `arguments`) in the page; its return value. */
    public function js(string $script, array $args = []): mixed
    {
        return $this->call('POST', $this->s('/execute/sync'), ['script' => $script, 'args' => $args])['value'];
    }

    /** The text of the first element matching $css, or null. */
    public function text(string $css): ?string
    {
        return $this->js('const e = document.querySelector(arguments[0]); return e ? e.textContent : null;', [$css]);
    }

    /** Clicks the first element matching $css, as a person would. */
    public function click(string $css): void
    {
        $found = $this->call('POST', $this->s('/element'), ['using' => 'css selector', 'value' => $css]);
        $e = $found['value'][self::ELEMENT] ?? throw new \RuntimeException("no element $css: " . json_encode($found));
        $this->call('POST', $this->s("/element/$e/click"), new \stdClass());
    }

    /** Waits until $condition() returns something other than null/false; returns it. */
    public function waitFor(callable $condition, float $timeout, string $what): mixed
    {
        return Process::until(static function () use ($condition) {
            try {
                return $condition() ?: null;
            } catch (\RuntimeException $e) {
                return null;
            }
        }, $timeout) ?? throw new \RuntimeException("browser: timed out waiting for $what");
    }

    public function screenshot(string $path): void
    {
        @mkdir(dirname($path), 0777, true);
        file_put_contents($path, base64_decode($this->call('GET', $this->s('/screenshot'))['value']));
    }

    public function close(): void
    {
        if (isset($this->session)) {
            $this->call('DELETE', $this->s(''), null, false);
            unset($this->session);
        }
        $this->driver->stop(5.0);
    }
}
