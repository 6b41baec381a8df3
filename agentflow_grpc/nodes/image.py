"""The image node: generates images from a rendered prompt.

Output: `{"images": [{"url": …} or {"b64_json": …}, …], "model": …}`.
"""

from __future__ import annotations

from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.sources.base import ImageRequest
from agentflow_grpc.spec import ImageNode


class ImageHandler:
    async def run(self, node: ImageNode, context: NodeContext) -> NodeResult:
        config = node.config
        model = await context.image_model(node.source)
        request = ImageRequest(
            prompt=context.render(config.prompt, "config.prompt"),
            model=config.model,
            size=config.size,
            n=config.n,
            quality=config.quality,
            output=config.output,
        )
        with context.timing_call():
            result = await model.generate_images(request)
        return NodeResult({"images": result.images, "model": result.model})
