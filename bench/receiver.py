"""A webhook receiver for the bench: `python -m bench.receiver PORT` answers every request 200 at once. Plain asyncio,
so that it costs the shared cores little (the deliveries are counted from their rows)."""

import asyncio
import sys


async def main(port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while headers := await reader.readuntil(b"\r\n\r\n"):
                length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))  # fmt: skip
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):  # the sender closed the connection
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
